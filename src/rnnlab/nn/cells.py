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

from rnnlab.nn.recurrent import reverse_padded


def rnn_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor, relu: bool = False) -> Tensor:
    """``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (or ReLU)."""
    pre = gx + torch.matmul(h, w_hh.transpose(-1, -2)) + b_hh
    return torch.relu(pre) if relu else torch.tanh(pre)


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
        return rnn_step(self._gx(x), h, self.weight_hh, self.bias_hh, self.nonlinearity == "relu")


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


def run_layer(cell: str, x: Tensor, lengths: Tensor, h0: Tensor, c0: Optional[Tensor], weights: list[list[Tensor]],
              nonlinearity: str = "tanh") -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """One (bi)directional layer over a padded batch, step by step.

    ``x [B, T, D]``, ``h0/c0 [dirs, B, H]``, ``weights[d] = [w_ih, w_hh, b_ih, b_hh]`` -> ``(out [B, T, H*dirs],
    h_n [dirs, B, H], c_n)``. What keeps the Python loop cheap:

    * the input projection of all steps and both directions is one batched matmul before the loop, with both
      biases folded in (for GRU, ``b_hn`` stays inside ``r * (W_hn h + b_hn)``);
    * each step is one batched matmul for both directions (weights stacked ``[dirs, G, H]``) and a few pointwise
      ops; LSTM applies one sigmoid to all four gates and one tanh to ``g``;
    * a sequence's state stops changing after its last step (masked update), but only from the step where the
      shortest sequence of the batch ends: with length buckets, most steps need no mask at all.

    The backward direction reads each sequence reversed within its length.
    """
    dirs = len(weights)
    B, T = x.shape[:2]
    H = h0.shape[-1]
    w_ih, w_hh, b_ih, b_hh = (torch.stack(ws) for ws in zip(*weights))  # [dirs, G, D], [dirs, G, H], [dirs, G]
    bias = b_ih + b_hh if cell != "gru" else b_ih + torch.cat([b_hh[:, : 2 * H], torch.zeros_like(b_hh[:, 2 * H :])], 1)
    inputs = torch.stack([x if d == 0 else reverse_padded(x, lengths) for d in range(dirs)])  # [dirs, B, T, D]
    gx = torch.baddbmm(bias.unsqueeze(1), inputs.flatten(1, 2), w_ih.transpose(1, 2))  # [dirs, B*T, G]
    gx = gx.view(dirs, B, T, -1).permute(2, 0, 1, 3).contiguous()  # [T, dirs, B, G]: one contiguous slice a step
    w_hh_t = w_hh.transpose(1, 2)  # [dirs, H, G]
    steps = int(lengths.max())
    first_masked = int(lengths.min())
    live = (torch.arange(steps, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)  # [T, B, 1]
    h, c = h0, c0
    outs = []
    if cell == "gru":
        b_hn = b_hh[:, 2 * H :].unsqueeze(1)  # [dirs, 1, H]
    for t in range(steps):
        if cell == "lstm":
            gates = torch.baddbmm(gx[t], h, w_hh_t)
            sig = torch.sigmoid(gates)
            c_new = sig[..., H : 2 * H] * c + sig[..., :H] * torch.tanh(gates[..., 2 * H : 3 * H])
            h_new = sig[..., 3 * H :] * torch.tanh(c_new)
        elif cell == "gru":
            gh = torch.bmm(h, w_hh_t)
            rz = torch.sigmoid(gx[t][..., : 2 * H] + gh[..., : 2 * H])
            n = torch.tanh(gx[t][..., 2 * H :] + rz[..., :H] * (gh[..., 2 * H :] + b_hn))
            h_new = n + rz[..., H:] * (h - n)
        else:
            pre = torch.baddbmm(gx[t], h, w_hh_t)
            h_new = torch.relu(pre) if nonlinearity == "relu" else torch.tanh(pre)
        if t < first_masked:  # every sequence of the batch is still running
            h = h_new
            if cell == "lstm":
                c = c_new
        else:
            h = torch.where(live[t], h_new, h)
            if cell == "lstm":
                c = torch.where(live[t], c_new, c)
        outs.append(h_new)
    out = torch.stack(outs, 2)  # [dirs, B, steps, H]
    if steps < T:
        out = torch.cat([out, out.new_zeros(dirs, B, T - steps, H)], 2)
    out = out[0] if dirs == 1 else torch.cat([out[0], reverse_padded(out[1], lengths)], -1)
    return out, h, c
