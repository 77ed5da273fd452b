"""Backpropagation through time written out by hand, for a vanilla tanh RNN -- no autograd.

Many-to-many with a squared-error loss, for learners to read next to the equations::

    z_i = U h_{i-1} + W x_i + b        h_i = tanh(z_i)        y_hat_i = V h_i + c
    C   = sum_i 1/2 ||y_hat_i - y_i||^2

Backward recursion (``e_i = y_hat_i - y_i``; ``tanh'(z_i) = 1 - h_i^2``; ``delta_{n+1} = 0``)::

    delta_i = (V^T e_i) * tanh'(z_i) + (U^T delta_{i+1}) * tanh'(z_i)       # dC/dz_i
    dC/dU = sum_i delta_i h_{i-1}^T    dC/dW = sum_i delta_i x_i^T    dC/db = sum_i delta_i
    dC/dV = sum_i e_i h_i^T            dC/dc = sum_i e_i              dC/dh_0 = U^T delta_1

All tensors carry a leading batch dimension ``B``; sums run over the batch as well.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


class ManualBPTTRNN:
    """A tanh RNN with a linear read-out whose gradients come from :meth:`backward` (the recursion above)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        dtype=torch.float64,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        k = 1.0 / math.sqrt(hidden_size)

        def init(*shape):
            return (torch.rand(*shape, generator=generator, dtype=dtype) * 2 - 1) * k

        self.params = {
            "U": init(hidden_size, hidden_size),
            "W": init(hidden_size, input_size),
            "b": init(hidden_size),
            "V": init(output_size, hidden_size),
            "c": init(output_size),
        }

    def forward(self, x: Tensor, h0: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``x [B, n, D]`` -> ``(y_hat [B, n, O], hs [B, n+1, H])`` with ``hs[:, 0] = h_0``."""
        p = self.params
        B, n, _ = x.shape
        h = x.new_zeros(B, p["U"].shape[0]) if h0 is None else h0
        hs = [h]
        for i in range(n):
            h = torch.tanh(h @ p["U"].T + x[:, i] @ p["W"].T + p["b"])
            hs.append(h)
        hs_t = torch.stack(hs, 1)
        return hs_t[:, 1:] @ p["V"].T + p["c"], hs_t

    @staticmethod
    def loss(y_hat: Tensor, y: Tensor) -> Tensor:
        return 0.5 * ((y_hat - y) ** 2).sum()

    def backward(self, x: Tensor, y: Tensor, h0: Optional[Tensor] = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and ``{"U","W","b","V","c","h0": dC/d.}`` by the backward recursion."""
        p = self.params
        y_hat, hs = self.forward(x, h0)
        e = y_hat - y  # [B, n, O]
        n = x.shape[1]
        grads = {name: torch.zeros_like(t) for name, t in p.items()}
        grads["V"] = torch.einsum("bio,bih->oh", e, hs[:, 1:])
        grads["c"] = e.sum((0, 1))
        delta_next = torch.zeros_like(hs[:, 0])
        for i in range(n - 1, -1, -1):  # i is 0-based: h_i is hs[:, i + 1]
            dtanh = 1 - hs[:, i + 1] ** 2
            delta = (e[:, i] @ p["V"]) * dtanh + (delta_next @ p["U"]) * dtanh
            grads["U"] += delta.T @ hs[:, i]
            grads["W"] += delta.T @ x[:, i]
            grads["b"] += delta.sum(0)
            delta_next = delta
        grads["h0"] = delta_next @ p["U"]
        return self.loss(y_hat, y), grads

    def sgd_step(self, x: Tensor, y: Tensor, lr: float = 0.01) -> float:
        loss, grads = self.backward(x, y)
        for name, t in self.params.items():
            t -= lr * grads[name]
        return float(loss)
