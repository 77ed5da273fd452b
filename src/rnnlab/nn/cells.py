"""Handwritten RNN, LSTM and GRU cells, written from the equations with plain tensor operations.

No call into ``torch.nn.RNN/LSTM/GRU`` or their fused kernels. Parameter names, shapes and gate order are torch's
(``weight_ih [G*H, D]``, ``weight_hh [G*H, H]``, ``bias_ih``, ``bias_hh``; LSTM gates i, f, g, o; GRU r, z, n), so
weights move between these cells, ``nn.*Cell`` and :class:`~rnnlab.nn.recurrent.Recurrent` unchanged.

Each cell is written once, in its class (:class:`Elman`, :class:`LSTM`, :class:`GRU`): ``step`` (one time step,
forward) and ``factors`` + ``backward_step`` (its BPTT recursion). :class:`_LayerBPTT` runs any of them over a whole
layer -- a time loop without an autograd graph per step -- and both :func:`run_layer` (``impl="handwritten"`` in
:class:`~rnnlab.nn.recurrent.Recurrent`) and the one-step modules :class:`RNNCell`, :class:`LSTMCell`,
:class:`GRUCell` call it, so the cell a reader studies is the code that trains.

Shapes inside the loop: ``gx [D, T, B, G*H]`` (the input projections of all steps, both directions ``D`` and the
biases folded in: see :func:`fold_biases`), the state ``h [D, B, H]``, ``w_t [D, H, G*H]`` (``W_hh`` transposed).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.functional import reverse_padded


def tanh(x: Tensor, out: Tensor) -> Tensor:
    """``tanh(x) = 2 sigmoid(2x) - 1``, written into ``out``: torch's CPU sigmoid kernel is ~3x faster than its tanh."""
    return torch.sigmoid(x * 2, out=out).mul_(2).sub_(1)


def activate(pre: Tensor, nonlinearity: str, out: Optional[Tensor] = None) -> Tensor:
    """The Elman cell's activation: ``tanh``, ``relu`` or ``identity`` (a linear RNN)."""
    if nonlinearity == "tanh":
        return torch.tanh(pre) if out is None else tanh(pre, out=out)
    if nonlinearity == "relu":
        return torch.relu(pre) if out is None else torch.clamp(pre, min=0, out=out)
    return pre if out is None else out.copy_(pre)


def fold_biases(cell: str, b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Optional[Tensor]]:
    """``(bias added to the input projection, b_hn)``: both biases add to the input side, except the GRU's ``b_hn``,
    which stays inside ``r * (W_hn h + b_hn)`` (returned ``[..., 1, H]``; None for the other cells)."""
    if cell != "gru":
        return b_ih + b_hh, None
    H = b_hh.shape[-1] // 3
    bias = b_ih + torch.cat([b_hh[..., : 2 * H], torch.zeros_like(b_hh[..., 2 * H :])], -1)
    return bias, b_hh[..., 2 * H :].unsqueeze(-2)


class Elman:
    """``h_t = act(a_t)``, ``a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``; ``act``: ``tanh``, ``relu`` or
    ``identity`` (a linear RNN). Backward: ``dL/da_t = dL/dh_t * act'(a_t)`` (from ``h_t`` itself: ``1 - h_t^2``,
    ``[h_t > 0]``, ``1``)."""

    gates, has_cell, separate_gh = 1, False, False

    def __init__(self, nonlinearity: str = "tanh") -> None:
        self.nonlinearity = nonlinearity

    def buffers(self, gx: Tensor, h0: Tensor) -> dict:
        return {}

    def step(self, S: dict, t: int, gx_t: Tensor, h: Tensor, c, w_t: Tensor, b_hn, y: Tensor, c_out) -> None:
        """Step ``t`` forward: write the new ``h`` into ``y`` (and, for a cell with a cell state, ``c`` into
        ``c_out``), keeping in ``S`` what the backward pass needs."""
        activate(gx_t.baddbmm_(h, w_t), self.nonlinearity, out=y)  # W_hh h added into gx in place

    def factors(self, S: dict, hs: Tensor, ys: Tensor) -> dict:
        return {"ys": ys}

    def backward_step(self, F: dict, t: int, dh: Tensor, dc, d_gx: Tensor, d_gh: Tensor):
        """Write ``dL/d(gates)`` of step ``t`` into ``d_gx`` (and ``d_gh``, the recurrent side, where it differs);
        return the terms of ``dL/dc_{t-1}`` and of ``dL/dh_{t-1}`` that bypass ``W_hh``, each a product ``(a, b)`` or
        None."""
        y = F["ys"][:, t]
        if self.nonlinearity == "identity":
            d_gx.copy_(dh)
        else:
            torch.mul(dh, (y > 0).to(y.dtype) if self.nonlinearity == "relu" else 1 - y * y, out=d_gx)
        return None, None


class LSTM:
    """Gates ``[i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``; ``i, f, o = sigmoid(.)``, ``g = tanh(.)``;
    ``c_t = f * c_{t-1} + i * g``; ``h_t = o * tanh(c_t)``. Backward, with ``dc_t = dL/dc_t`` (from ``c_{t+1}`` and
    through ``h_t``): ``da_i = dc_t g i(1-i)``, ``da_f = dc_t c_{t-1} f(1-f)``, ``da_g = dc_t i (1-g^2)``,
    ``da_o = dh_t tanh(c_t) o(1-o)``; ``dL/dc_{t-1} = dc_t f``."""

    gates, has_cell, separate_gh = 4, True, False

    def buffers(self, gx: Tensor, h0: Tensor) -> dict:
        return {"acts": torch.empty_like(gx), "tanh_c": gx.new_empty(gx.shape[:-1] + h0.shape[-1:])}

    def step(self, S: dict, t: int, gx_t: Tensor, h: Tensor, c: Tensor, w_t: Tensor, b_hn, y: Tensor, c_out: Tensor):
        H = h.shape[-1]
        acts, tanh_c = S["acts"][:, t], S["tanh_c"][:, t]
        a = gx_t.baddbmm_(h, w_t)  # W_hh h added in place: gx is the loop's own buffer
        a[..., 2 * H : 3 * H].mul_(2)  # g = tanh(a_g) = 2 sigmoid(2 a_g) - 1: one sigmoid for the four gates
        torch.sigmoid(a, out=acts)
        i, f, g, o = acts.split(H, -1)
        g.mul_(2).sub_(1)
        torch.mul(i, g, out=c_out).addcmul_(f, c)
        tanh(c_out, out=tanh_c)
        torch.mul(o, tanh_c, out=y)

    def factors(self, S: dict, hs: Tensor, ys: Tensor) -> dict:
        """Every factor that does not depend on the recursion, for all steps at once."""
        acts, tanh_c, cs = S["acts"], S["tanh_c"], S["cs"]
        H = ys.shape[-1]
        i, f, g, o = acts.split(H, -1)
        da_ifg = torch.cat([g * i * (1 - i), cs[:, :-1] * f * (1 - f), i * (1 - g * g)], -1)
        return {
            "dc_dh": o * (1 - tanh_c * tanh_c),  # dc_t/dh_t through h = o * tanh(c)
            "da_o": tanh_c * o * (1 - o),
            "da_ifg": da_ifg.view(*da_ifg.shape[:-1], 3, H),
            "f": f,
        }

    def backward_step(self, F: dict, t: int, dh: Tensor, dc: Tensor, d_gx: Tensor, d_gh: Tensor):
        H = dh.shape[-1]
        dc_t = torch.addcmul(dc, dh, F["dc_dh"][:, t])
        da_ifg = F["da_ifg"][:, t]
        torch.mul(da_ifg, dc_t.unsqueeze(-2), out=d_gx[..., : 3 * H].view(da_ifg.shape))
        torch.mul(dh, F["da_o"][:, t], out=d_gx[..., 3 * H :])
        return (dc_t, F["f"][:, t]), None  # dL/dc_{t-1} = dc_t * f


class GRU:
    """``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``. Backward, with
    ``a_n = dh_t (1 - z)(1 - n^2)``: ``da_r = a_n (W_hn h + b_hn) r(1-r)``, ``da_z = dh_t (h_{t-1} - n) z(1-z)``,
    the input side of ``n`` gets ``a_n`` and its recurrent side ``a_n r``; ``dL/dh_{t-1} = W_hh^T d(W_hh h) + dh_t z``."""

    gates, has_cell, separate_gh = 3, False, True

    def buffers(self, gx: Tensor, h0: Tensor) -> dict:
        return {"acts": torch.empty_like(gx), "ghn": gx.new_empty(gx.shape[:-1] + h0.shape[-1:])}

    def step(self, S: dict, t: int, gx_t: Tensor, h: Tensor, c, w_t: Tensor, b_hn: Tensor, y: Tensor, c_out) -> None:
        H = h.shape[-1]
        acts, ghn = S["acts"][:, t], S["ghn"][:, t]
        gh = torch.bmm(h, w_t)
        torch.sigmoid(gx_t[..., : 2 * H] + gh[..., : 2 * H], out=acts[..., : 2 * H])
        r, z = acts[..., :H], acts[..., H : 2 * H]
        torch.add(gh[..., 2 * H :], b_hn, out=ghn)
        n = tanh(torch.addcmul(gx_t[..., 2 * H :], r, ghn), out=acts[..., 2 * H :])
        torch.addcmul(n, z, h - n, out=y)

    def factors(self, S: dict, hs: Tensor, ys: Tensor) -> dict:
        H = ys.shape[-1]
        r, z, n = S["acts"].split(H, -1)
        a_n = (1 - z) * (1 - n * n)
        gx_factor = torch.cat([a_n * S["ghn"] * r * (1 - r), (hs[:, :-1] - n) * z * (1 - z), a_n], -1)
        gh_factor = torch.cat([gx_factor[..., : 2 * H], a_n * r], -1)
        return {
            "gx": gx_factor.view(*gx_factor.shape[:-1], 3, H),
            "gh": gh_factor.view(*gh_factor.shape[:-1], 3, H),
            "z": z,
        }

    def backward_step(self, F: dict, t: int, dh: Tensor, dc, d_gx: Tensor, d_gh: Tensor):
        f_gx, f_gh = F["gx"][:, t], F["gh"][:, t]
        torch.mul(f_gx, dh.unsqueeze(-2), out=d_gx.view(f_gx.shape))
        torch.mul(f_gh, dh.unsqueeze(-2), out=d_gh.view(f_gh.shape))
        return None, (dh, F["z"][:, t])  # dh_{t-1} gets dh_t * z directly


def cell_math(cell: str, nonlinearity: str = "tanh"):
    return {"rnn": lambda: Elman(nonlinearity), "lstm": LSTM, "gru": GRU}[cell]()


class _LayerBPTT(torch.autograd.Function):
    """The time loop of one layer for any cell above, forward and backward (no autograd graph per step).

    Autograd would record ~10 nodes per step and replay them; here the forward loop runs without a graph and keeps
    what the cell's backward needs, and the backward loop applies the cell's BPTT recursion step by step, with the
    weight gradient summed in one matmul at the end. Inputs: ``gx [D, T, B, G]`` (input projections with the biases
    folded in; the loop adds ``W_hh h`` into it in place, so it is a scratch buffer), ``h0/c0 [D, B, H]``,
    ``w_hh [D, G, H]``, ``b_hn [D, 1, H]`` (GRU only), ``live [T, B, 1]`` (step t < length), ``first_masked`` (steps
    before it are live for every sequence). A sequence's state stops changing after its last step. Outputs: per-step
    ``h [D, T, B, H]`` (past a sequence's end, the state it carries) and the final ``h`` (and ``c``). Time-major
    within each direction, so a step is a view, and the weight gradient is one batched matmul without a copy.
    """

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh, b_hn, live, first_masked: int, cell: str, nonlinearity: str):
        math_ = cell_math(cell, nonlinearity)
        T = gx.shape[1]
        w_t = w_hh.transpose(1, 2)
        D, B, H = h0.shape
        hs = gx.new_empty(D, T + 1, B, H)  # the state entering each step (hs[:, 0] = h0) and leaving the last
        hs[:, 0] = h0
        S = math_.buffers(gx, h0)
        cs = None
        if math_.has_cell:
            cs = S["cs"] = gx.new_empty(D, T + 1, B, H)
            cs[:, 0] = c0
        for t in range(T):  # each step writes its new state straight into hs[:, t + 1] (and cs)
            math_.step(
                S,
                t,
                gx[:, t],
                hs[:, t],
                None if cs is None else cs[:, t],
                w_t,
                b_hn,
                hs[:, t + 1],
                None if cs is None else cs[:, t + 1],
            )
            if t >= first_masked:  # a finished sequence keeps its state
                torch.where(live[t], hs[:, t + 1], hs[:, t], out=hs[:, t + 1])
                if cs is not None:
                    torch.where(live[t], cs[:, t + 1], cs[:, t], out=cs[:, t + 1])
        ctx.save_for_backward(hs, w_hh, live)
        ctx.S, ctx.math, ctx.first_masked, ctx.gates = S, math_, first_masked, gx.shape[-1]
        ys = hs[:, 1:]  # the output of every step: past a sequence's end, its carried state
        return (ys, hs[:, T], cs[:, T]) if cs is not None else (ys, hs[:, T])

    @staticmethod
    def backward(ctx, d_ys, d_hT, d_cT=None):
        hs, w_hh, live = ctx.saved_tensors
        ys = hs[:, 1:]
        math_, first_masked = ctx.math, ctx.first_masked
        T = ys.shape[1]
        d_gx = ys.new_empty(*ys.shape[:-1], ctx.gates)
        d_gh = torch.empty_like(d_gx) if math_.separate_gh else d_gx  # GRU: dL/d(W_hh h) differs in its n part
        dh = d_hT.clone() if d_hT is not None else torch.zeros_like(hs[:, 0])
        dc = (d_cT.clone() if d_cT is not None else torch.zeros_like(hs[:, 0])) if math_.has_cell else None
        d_ys = d_ys if d_ys is not None else torch.zeros_like(ys)
        F = math_.factors(ctx.S, hs, ys)
        for t in range(T - 1, -1, -1):
            dh_total = d_ys[:, t] + dh  # the output of step t is the state it carries on
            if t < first_masked:  # every sequence live: the carried state is this step's
                dh_new, dh_skip, dc_new, dc_skip = dh_total, None, dc, None
            else:  # finished sequences pass their state (and its gradient) through unchanged
                dh_new = torch.where(live[t], dh_total, 0.0)
                dh_skip = torch.where(live[t], 0.0, dh_total)
                if dc is not None:
                    dc_new, dc_skip = torch.where(live[t], dc, 0.0), torch.where(live[t], 0.0, dc)
                else:
                    dc_new = dc_skip = None
            # the cell's terms of dL/dc_{t-1} and of the direct path to dL/dh_{t-1}, as products (a, b)
            dc_prev, dh_direct = math_.backward_step(F, t, dh_new, dc_new, d_gx[:, t], d_gh[:, t])
            if dc is not None:
                dc = torch.mul(*dc_prev) if dc_skip is None else torch.addcmul(dc_skip, *dc_prev)
            dh = torch.bmm(d_gh[:, t], w_hh)
            if dh_direct is not None:
                dh.addcmul_(*dh_direct)
            if dh_skip is not None:
                dh = dh + dh_skip
        D, B, G = d_gh.shape[0], d_gh.shape[2], d_gh.shape[3]
        d_w = torch.bmm(
            d_gh.view(D, T * B, G).transpose(1, 2), hs[:, :-1].reshape(D, T * B, -1)
        )  # sum_t dg_t h_{t-1}^T
        H = ys.shape[-1]
        d_bhn = d_gh[..., 2 * H :].sum((1, 2)).unsqueeze(1) if math_.separate_gh else None
        return d_gx, dh, dc, d_w, d_bhn, None, None, None, None


class _Cell(nn.Module):
    """One step of a cell, as ``nn.*Cell``: ``x [..., input_size]`` and the state ``[..., hidden_size]``. It runs the
    layer loop (:class:`_LayerBPTT`) for one step, so its forward and backward are the driver's."""

    cell = "rnn"
    nonlinearity = "tanh"  # the Elman cell's activation; RNNCell takes it as an argument

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        G = cell_math(self.cell).gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(G), requires_grad=bias)
        self.bias_hh = nn.Parameter(torch.zeros(G), requires_grad=bias)
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            if p.requires_grad:
                nn.init.uniform_(p, -bound, bound)

    def _run(self, x: Tensor, h: Optional[Tensor], c: Optional[Tensor]):
        lead = x.shape[:-1]
        zeros = x.new_zeros(*lead, self.hidden_size)
        h = zeros if h is None else h
        bias, b_hn = fold_biases(self.cell, self.bias_ih, self.bias_hh)
        gx = torch.matmul(x.reshape(1, 1, -1, self.input_size), self.weight_ih.t()) + bias  # [T=1, D=1, B, G]
        live = torch.ones(1, gx.shape[2], 1, dtype=torch.bool, device=x.device)
        state = [h.reshape(1, -1, self.hidden_size), None if c is None else c.reshape(1, -1, self.hidden_size)]
        out = _LayerBPTT.apply(
            gx,
            *state,
            self.weight_hh.unsqueeze(0),
            b_hn if b_hn is None else b_hn.unsqueeze(0),
            live,
            1,
            self.cell,
            self.nonlinearity,
        )
        return out[0].reshape(*lead, self.hidden_size), (
            out[2].reshape(*lead, self.hidden_size) if c is not None else None
        )


class RNNCell(_Cell):
    """Elman cell (:class:`Elman`): ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (``nonlinearity="relu"``: ReLU).
    Like ``nn.RNNCell``."""

    cell = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, x: Tensor, h: Optional[Tensor] = None) -> Tensor:
        return self._run(x, h, None)[0]


class LSTMCell(_Cell):
    """LSTM cell (:class:`LSTM`), gates i, f, g, o: ``c' = f * c + i * g``, ``h' = o * tanh(c')``. Like
    ``nn.LSTMCell``."""

    cell = "lstm"

    def forward(self, x: Tensor, state: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, Tensor]:
        h, c = (None, x.new_zeros(*x.shape[:-1], self.hidden_size)) if state is None else state
        return self._run(x, h, c)


class GRUCell(_Cell):
    """GRU cell (:class:`GRU`), gates r, z, n: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * n + z * h``. Like ``nn.GRUCell``."""

    cell = "gru"

    def forward(self, x: Tensor, h: Optional[Tensor] = None) -> Tensor:
        return self._run(x, h, None)[0]


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
    bias, b_hn = fold_biases(cell, b_ih, b_hh)  # b_hn: [dirs, 1, H] for GRU
    steps = int(lengths.max())
    inputs = torch.stack([x if d == 0 else reverse_padded(x, lengths) for d in range(dirs)])  # [dirs, B, T, D]
    inputs = inputs[:, :, :steps].transpose(1, 2).reshape(dirs, steps * B, -1)  # time-major: [dirs, steps*B, D]
    gx = torch.baddbmm(bias.unsqueeze(1), inputs, w_ih.transpose(1, 2)).view(dirs, steps, B, -1)  # [dirs, steps, B, G]
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
    out = ys.transpose(1, 2)  # [dirs, B, steps, H]
    if steps < T:
        out = torch.cat([out, out.new_zeros(dirs, B, T - steps, H)], 2)
    out = out[0] if dirs == 1 else torch.cat([out[0], reverse_padded(out[1], lengths)], -1)
    return out, h, c
