"""Attention over encoder outputs, masked on source padding.

``Attention(kind, query_size, key_size)``: ``forward(query [B, Q, Dq], keys [B, S, Dk], mask [B, S]) ->
(context [B, Q, Dk], weights [B, Q, S])``. Scores:

* ``additive`` (Bahdanau et al. 2015): ``v^T tanh(W q + U k)``;
* ``general`` (Luong et al. 2015): ``q^T W k``;
* ``dot`` (Luong et al. 2015): ``q^T k`` (``query_size`` must equal ``key_size``).

Padding positions (``mask`` False) get weight exactly 0; each row of weights sums to 1. Keys are projected once per
sentence (:meth:`prepare`), not once per decoder step.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

AttentionKind = Literal["additive", "general", "dot"]


class Attention(nn.Module):
    def __init__(self, kind: AttentionKind, query_size: int, key_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        if kind not in ("additive", "general", "dot"):
            raise RnnlabError(f"attention must be additive, general, dot or none, got {kind!r}")
        if kind == "dot" and query_size != key_size:
            raise RnnlabError(
                f"dot attention needs query size == key size, got {query_size} and {key_size}: use "
                f"'general' (a learned projection) or make the encoder output match the decoder"
            )
        self.kind = kind
        if kind == "additive":
            size = attention_size or query_size
            self.key_proj = nn.Linear(key_size, size, bias=False)
            self.query_proj = nn.Linear(query_size, size, bias=True)
            self.v = nn.Linear(size, 1, bias=False)
        elif kind == "general":
            self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        """What the scores need of the keys, computed once per source batch."""
        return keys if self.kind == "dot" else self.key_proj(keys)

    def forward(
        self, query: Tensor, keys: Tensor, mask: Tensor, prepared: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        pk = self.prepare(keys) if prepared is None else prepared
        if self.kind == "additive":  # [B, Q, 1, A] + [B, 1, S, A] -> [B, Q, S]
            scores = self.v(torch.tanh(self.query_proj(query).unsqueeze(2) + pk.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.bmm(query, pk.transpose(1, 2))
        scores = scores.float().masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.to(keys.dtype), keys)
        return context, weights
