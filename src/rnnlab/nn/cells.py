"""Handwritten RNN, LSTM and GRU cells, written from the equations with plain tensor operations.

No call into ``torch.nn.RNN/LSTM/GRU`` or their fused kernels. Parameter names, shapes and gate order are torch's
(``weight_ih [G*H, D]``, ``weight_hh [G*H, H]``, ``bias_ih``, ``bias_hh``; LSTM gates i, f, g, o; GRU r, z, n), so
weights move between these cells, ``nn.*Cell`` and :class:`~rnnlab.nn.recurrent.Recurrent` unchanged.

The step functions take the input projection ``gx = W_ih x_t + b_ih`` already computed (the driver does it for all
time steps in one matmul before the loop) and work on any leading dimensions, so the driver runs both directions of
a bidirectional layer in one batched matmul per step (weights stacked ``[dirs, G*H, H]``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.functional import reverse_padded


def activate(pre: Tensor, nonlinearity: str, out: Optional[Tensor] = None) -> Tensor:
    """The Elman cell's activation: ``tanh``, ``relu`` or ``identity`` (a linear RNN)."""
    if nonlinearity == "tanh":
        return torch.tanh(pre) if out is None else torch.tanh(pre, out=out)
    if nonlinearity == "relu":
        return torch.relu(pre) if out is None else torch.clamp(pre, min=0, out=out)
    return pre if out is None else out.copy_(pre)


def rnn_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (or ReLU, or identity)."""
    pre = gx + torch.matmul(h, w_hh.transpose(-1, -2)) + b_hh
    return activate(pre, nonlinearity)


def lstm_step(gx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """``[i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``; ``i, f, o = sigmoid(.)``, ``g = tanh(.)``;
    ``c_t = f * c_{t-1} + i * g``; ``h_t = o * tanh(c_t)``."""
    gates = gx + torch.matmul(h, w_hh.transpose(-1, -2)) + b_hh
    i, f, g, o = gates.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``."""
    gh = torch.matmul(h, w_hh.transpose(-1, -2)) + b_hh
    x_r, x_z, x_n = gx.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n)


class _Cell(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        G = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(G), requires_grad=bias)
        self.bias_hh = nn.Parameter(torch.zeros(G), requires_grad=bias)
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            if p.requires_grad:
                nn.init.uniform_(p, -bound, bound)

    def _gx(self, x: Tensor) -> Tensor:
        return torch.matmul(x, self.weight_ih.t()) + self.bias_ih

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(*x.shape[:-1], self.hidden_size)


class RNNCell(_Cell):
    """Elman cell: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (``nonlinearity="relu"``: ReLU). Like ``nn.RNNCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, x: Tensor, h: Optional[Tensor] = None) -> Tensor:
        h = self._zeros(x) if h is None else h
        return rnn_step(self._gx(x), h, self.weight_hh, self.bias_hh, self.nonlinearity)


class LSTMCell(_Cell):
    """LSTM cell, gates i, f, g, o: ``c' = f * c + i * g``, ``h' = o * tanh(c')``. Like ``nn.LSTMCell``."""

    gates = 4

    def forward(self, x: Tensor, state: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, Tensor]:
        h, c = (self._zeros(x), self._zeros(x)) if state is None else state
        return lstm_step(self._gx(x), h, c, self.weight_hh, self.bias_hh)


class GRUCell(_Cell):
    """GRU cell, gates r, z, n: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
    Like ``nn.GRUCell``."""

    gates = 3

    def forward(self, x: Tensor, h: Optional[Tensor] = None) -> Tensor:
        h = self._zeros(x) if h is None else h
        return gru_step(self._gx(x), h, self.weight_hh, self.bias_hh)


class _LayerBPTT(torch.autograd.Function):
    """The time loop of one layer, forward and backward written out by hand (no autograd graph per step).

    Autograd would record ~10 nodes per step and replay them; here the forward loop runs without a graph and keeps
    the gate activations, and the backward loop applies the BPTT recursion of the cell directly, step by step, with
    the weight gradient summed in one matmul at the end. Inputs: ``gx [T, D, B, G]`` (input projections with the
    biases folded in), ``h0/c0 [D, B, H]``, ``w_hh [D, G, H]``, ``b_hn [D, 1, H]`` (GRU only), ``live [T, B, 1]``
    (step t < length), ``first_masked`` (steps before it are live for every sequence). Outputs: per-step ``h_new
    [T, D, B, H]`` and the final carried ``h`` (and ``c``).
    """

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh, b_hn, live, first_masked: int, cell: str, nonlinearity: str):
        T, H = gx.shape[0], h0.shape[-1]
        w_t = w_hh.transpose(1, 2)
        hs = gx.new_empty(T + 1, *h0.shape)  # carried state entering each step (hs[0] = h0)
        hs[0] = h0
        ys = gx.new_empty(T, *h0.shape)  # h_new of every step
        acts = gx.new_empty(gx.shape) if cell != "rnn" else None  # post-activation gates
        cs = None
        if cell == "lstm":
            cs = gx.new_empty(T + 1, *h0.shape)
            cs[0] = c0
            tanh_c = gx.new_empty(T, *h0.shape)
        elif cell == "gru":
            ghn = gx.new_empty(T, *h0.shape)  # W_hn h + b_hn, needed for dr
        for t in range(T):
            h = hs[t]
            if cell == "lstm":
                a = torch.baddbmm(gx[t], h, w_t)
                torch.sigmoid(a, out=acts[t])
                torch.tanh(a[..., 2 * H : 3 * H], out=acts[t][..., 2 * H : 3 * H])
                i, f, g, o = acts[t].split(H, -1)
                c_new = torch.addcmul(i * g, f, cs[t])
                torch.tanh(c_new, out=tanh_c[t])
                torch.mul(o, tanh_c[t], out=ys[t])
                cs[t + 1] = c_new if t < first_masked else torch.where(live[t], c_new, cs[t])
            elif cell == "gru":
                gh = torch.bmm(h, w_t)
                torch.sigmoid(gx[t][..., : 2 * H] + gh[..., : 2 * H], out=acts[t][..., : 2 * H])
                r, z = acts[t][..., :H], acts[t][..., H : 2 * H]
                torch.add(gh[..., 2 * H :], b_hn, out=ghn[t])
                n = torch.tanh(torch.addcmul(gx[t][..., 2 * H :], r, ghn[t]), out=acts[t][..., 2 * H :])
                torch.addcmul(n, z, h - n, out=ys[t])
            else:
                pre = torch.baddbmm(gx[t], h, w_t)
                activate(pre, nonlinearity, out=ys[t])
            hs[t + 1] = ys[t] if t < first_masked else torch.where(live[t], ys[t], h)
        ctx.save_for_backward(
            hs, ys, acts, cs, tanh_c if cell == "lstm" else None, ghn if cell == "gru" else None, w_hh, live
        )
        ctx.first_masked, ctx.cell, ctx.nonlinearity = first_masked, cell, nonlinearity
        if cell == "lstm":
            return ys, hs[T], cs[T]
        return ys, hs[T]

    @staticmethod
    def backward(ctx, d_ys, d_hT, d_cT=None):
        hs, ys, acts, cs, tanh_c, ghn, w_hh, live = ctx.saved_tensors
        cell, first_masked = ctx.cell, ctx.first_masked
        T, H = ys.shape[0], ys.shape[-1]
        d_gx = torch.empty_like(acts) if acts is not None else torch.empty_like(ys)
        d_gh = torch.empty_like(d_gx) if cell == "gru" else d_gx  # GRU: dL/d(W_hh h) differs in its n part
        dh = d_hT.clone() if d_hT is not None else torch.zeros_like(hs[0])
        dc = (d_cT.clone() if d_cT is not None else torch.zeros_like(hs[0])) if cell == "lstm" else None
        d_ys = d_ys if d_ys is not None else torch.zeros_like(ys)
        if cell == "lstm":  # every factor that does not depend on the recursion, for all steps at once
            i, f, g, o = acts.split(H, -1)
            dc_dh = o * (1 - tanh_c * tanh_c)  # dc_t/dh_new (through h = o * tanh(c))
            da_o = tanh_c * o * (1 - o)  # dL/da_o = dh_new * this
            da_ifg = torch.cat(
                [g * i * (1 - i), cs[:-1] * f * (1 - f), i * (1 - g * g)], -1
            )  # dL/da_[ifg] = dc_t * this
            da_ifg = da_ifg.view(*da_ifg.shape[:-1], 3, H)
            del i, g, o
        elif cell == "gru":  # dL/d[a_r, a_z, a_n] = dh_new * gx_factor, dL/d(W_hh h) = dh_new * gh_factor
            r, z, n = acts.split(H, -1)
            a_n = (1 - z) * (1 - n * n)
            gx_factor = torch.cat([a_n * ghn * r * (1 - r), (hs[:-1] - n) * z * (1 - z), a_n], -1)
            gh_factor = torch.cat([gx_factor[..., : 2 * H], a_n * r], -1)
            gx_factor = gx_factor.view(*gx_factor.shape[:-1], 3, H)
            gh_factor = gh_factor.view(*gh_factor.shape[:-1], 3, H)
            del r, n, a_n
        for t in range(T - 1, -1, -1):
            if t < first_masked:  # every sequence live: the carried state is h_new
                dh_new, dh_skip = d_ys[t] + dh, None
                dc_new, dc_skip = dc, None
            else:  # dead sequences pass their state (and its gradient) through unchanged
                dh_new = d_ys[t] + torch.where(live[t], dh, 0.0)
                dh_skip = torch.where(live[t], 0.0, dh)
                if cell == "lstm":
                    dc_new, dc_skip = torch.where(live[t], dc, 0.0), torch.where(live[t], 0.0, dc)
            if cell == "lstm":
                dc_t = torch.addcmul(dc_new, dh_new, dc_dh[t])
                torch.mul(da_ifg[t], dc_t.unsqueeze(-2), out=d_gx[t][..., : 3 * H].view(da_ifg[t].shape))
                torch.mul(dh_new, da_o[t], out=d_gx[t][..., 3 * H :])
                dc = dc_t * f[t] if dc_skip is None else torch.addcmul(dc_skip, dc_t, f[t])
            elif cell == "gru":
                torch.mul(gx_factor[t], dh_new.unsqueeze(-2), out=d_gx[t].view(gx_factor[t].shape))
                torch.mul(gh_factor[t], dh_new.unsqueeze(-2), out=d_gh[t].view(gh_factor[t].shape))
            else:
                y = ys[t]
                if ctx.nonlinearity == "identity":
                    d_gx[t].copy_(dh_new)
                else:
                    torch.mul(dh_new, (y > 0).to(y.dtype) if ctx.nonlinearity == "relu" else 1 - y * y, out=d_gx[t])
            dh_prev = torch.bmm(d_gh[t], w_hh)
            if cell == "gru":
                dh_prev.addcmul_(dh_new, z[t])
            dh = dh_prev if dh_skip is None else dh_prev + dh_skip
        d_w = torch.einsum("tdbg,tdbh->dgh", d_gh, hs[:-1])
        d_bhn = d_gh[..., 2 * H :].sum((0, 2)).unsqueeze(1) if cell == "gru" else None
        return d_gx, dh, dc, d_w, d_bhn, None, None, None, None


def run_layer(
    cell: str,
    x: Tensor,
    lengths: Tensor,
    h0: Tensor,
    c0: Optional[Tensor],
    weights: list[list[Tensor]],
    nonlinearity: str = "tanh",
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """One (bi)directional layer over a padded batch, step by step.

    ``x [B, T, D]``, ``h0/c0 [dirs, B, H]``, ``weights[d] = [w_ih, w_hh, b_ih, b_hh]`` -> ``(out [B, T, H*dirs],
    h_n [dirs, B, H], c_n)``. What keeps the Python loop cheap:

    * the input projection of all steps and both directions is one batched matmul before the loop, with both
      biases folded in (for GRU, ``b_hn`` stays inside ``r * (W_hn h + b_hn)``);
    * each step is one batched matmul for both directions (weights stacked ``[dirs, G, H]``) and a few pointwise
      ops, and the backward pass is the BPTT recursion written out (:class:`_LayerBPTT`), not an autograd replay;
    * a sequence's state stops changing after its last step (masked update), but only from the step where the
      shortest sequence of the batch ends: with length buckets, most steps need no mask at all.

    The backward direction reads each sequence reversed within its length.
    """
    dirs = len(weights)
    B, T = x.shape[:2]
    H = h0.shape[-1]
    w_ih, w_hh, b_ih, b_hh = (torch.stack(ws) for ws in zip(*weights))  # [dirs, G, D], [dirs, G, H], [dirs, G]
    if cell == "gru":  # b_hr, b_hz add to the input side; b_hn stays inside r * (W_hn h + b_hn)
        bias = b_ih + torch.cat([b_hh[:, : 2 * H], torch.zeros_like(b_hh[:, 2 * H :])], 1)
        b_hn = b_hh[:, 2 * H :].unsqueeze(1)
    else:
        bias, b_hn = b_ih + b_hh, None
    inputs = torch.stack([x if d == 0 else reverse_padded(x, lengths) for d in range(dirs)])  # [dirs, B, T, D]
    gx = torch.baddbmm(bias.unsqueeze(1), inputs.flatten(1, 2), w_ih.transpose(1, 2))  # [dirs, B*T, G]
    steps = int(lengths.max())
    gx = gx.view(dirs, B, T, -1)[:, :, :steps].permute(2, 0, 1, 3).contiguous()  # [steps, dirs, B, G]
    live = (torch.arange(steps, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)  # [T, B, 1]
    dtype = w_hh.dtype  # the loop runs in the parameters' precision, also under autocast (bf16-mixed)
    with torch.autocast(device_type=x.device.type, enabled=False):
        result = _LayerBPTT.apply(
            gx.to(dtype),
            h0.to(dtype),
            None if c0 is None else c0.to(dtype),
            w_hh,
            None if b_hn is None else b_hn.to(dtype),
            live,
            int(lengths.min()),
            cell,
            nonlinearity,
        )
    ys, h, c = result if cell == "lstm" else (*result, None)
    out = ys.permute(1, 2, 0, 3)  # [dirs, B, steps, H]
    if steps < T:
        out = torch.cat([out, out.new_zeros(dirs, B, T - steps, H)], 2)
    out = out[0] if dirs == 1 else torch.cat([out[0], reverse_padded(out[1], lengths)], -1)
    return out, h, c
