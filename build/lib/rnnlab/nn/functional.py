"""Operations on right-padded batches ``[B, T, F]`` with their ``lengths [B]``."""

from __future__ import annotations

import torch
from torch import Tensor


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each right-padded sequence within its own length: ``x[b, :len_b]`` is flipped, padding stays put.

    ``[B, T, F]`` -> ``[B, T, F]``; its own inverse. This is how a backward direction starts at the true end.
    """
    T = x.shape[1]
    t = torch.arange(T, device=x.device).unsqueeze(0)
    idx = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)  # [B, T]
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def last_step(x: Tensor, lengths: Tensor) -> Tensor:
    """``x[b, lengths[b] - 1]`` for each b: ``[B, T, F]`` -> ``[B, F]``."""
    return x[torch.arange(x.shape[0], device=x.device), lengths - 1]
