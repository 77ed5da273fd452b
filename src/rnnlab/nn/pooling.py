"""Length-aware pooling of recurrent outputs ``[B, T, H]`` into one vector per sequence ``[B, H]``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

POOLINGS = ("last", "max", "mean", "attention")


class Pooling(nn.Module):
    """``last``: the final states (forward direction at the true last step, backward at step 0);
    ``max`` / ``mean``: over the real steps only; ``attention``: ``softmax(v . tanh(W h_t))`` over real steps."""

    def __init__(self, kind: Literal["last", "max", "mean", "attention"], size: int, attention_dim: int = 128):
        super().__init__()
        if kind not in POOLINGS:
            raise RnnlabError(f"pooling must be one of {POOLINGS}, got {kind!r}")
        self.kind = kind
        if kind == "attention":
            self.proj = nn.Linear(size, attention_dim)
            self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, outputs: Tensor, lengths: Tensor, h_n: Tensor, num_directions: int) -> Tensor:
        """``outputs [B, T, H*dirs]``, ``lengths [B]``, ``h_n [L*dirs, B, H]`` -> ``[B, H*dirs]``."""
        if self.kind == "last":
            return torch.cat(list(h_n[-num_directions:]), -1)
        mask = torch.arange(outputs.shape[1], device=outputs.device).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
        if self.kind == "max":
            return outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        if self.kind == "mean":
            return (outputs * mask.unsqueeze(-1)).sum(1) / lengths.unsqueeze(1).to(outputs.dtype)
        scores = self.score(torch.tanh(self.proj(outputs))).squeeze(-1)  # [B, T]
        weights = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=1).to(outputs.dtype)
        return torch.einsum("bt,bth->bh", weights, outputs)
