"""Length-aware pooling of recurrent outputs ``[B, T, H]`` into one vector per sequence ``[B, H]``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

POOLINGS = ("last", "max", "mean", "attention", "concat")


class Pooling(nn.Module):
    """``last``: the final states (forward direction at the true last step, backward at step 0);
    ``max`` / ``mean``: over the real steps only; ``attention``: ``softmax(v . tanh(W h_t))`` over real steps;
    ``concat``: ``[last, max, mean]`` side by side (ULMFiT's concat pooling; ``output_size`` is 3x ``size``)."""

    def __init__(
        self, kind: Literal["last", "max", "mean", "attention", "concat"], size: int, attention_dim: int = 128
    ):
        super().__init__()
        if kind not in POOLINGS:
            raise RnnlabError(f"pooling must be one of {POOLINGS}, got {kind!r}")
        self.kind = kind
        self.output_size = 3 * size if kind == "concat" else size
        if kind == "attention":
            self.proj = nn.Linear(size, attention_dim)
            self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, outputs: Tensor, lengths: Tensor, h_n: Tensor, num_directions: int) -> Tensor:
        """``outputs [B, T, H*dirs]``, ``lengths [B]``, ``h_n [L*dirs, B, H]`` -> ``[B, H*dirs]``."""
        last = torch.cat(list(h_n[-num_directions:]), -1)
        if self.kind == "last":
            return last
        mask = torch.arange(outputs.shape[1], device=outputs.device).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
        if self.kind in ("max", "concat"):
            pooled_max = outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        if self.kind in ("mean", "concat"):
            pooled_mean = (outputs * mask.unsqueeze(-1)).sum(1) / lengths.unsqueeze(1).to(outputs.dtype)
        if self.kind == "max":
            return pooled_max
        if self.kind == "mean":
            return pooled_mean
        if self.kind == "concat":
            return torch.cat([last.to(outputs.dtype), pooled_max, pooled_mean], -1)
        scores = self.score(torch.tanh(self.proj(outputs))).squeeze(-1)  # [B, T]
        weights = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=1).to(outputs.dtype)
        return torch.einsum("bt,bth->bh", weights, outputs)
