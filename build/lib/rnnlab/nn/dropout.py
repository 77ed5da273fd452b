"""The dropouts that make LSTM language models good (Gal & Ghahramani 2016; Merity et al. 2018, AWD-LSTM)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError


class LockedDropout(nn.Module):
    """Variational ("locked") dropout on ``[B, T, D]``: one mask per sequence and feature, the same at every step,
    so a unit dropped at step 1 stays dropped for the whole sequence. Identity in eval mode or with ``p = 0``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise RnnlabError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


def drop_words(tokens: Tensor, p: float, training: bool, unk_id: int = 1, pad_id: int = 0) -> Tensor:
    """Word dropout on ids ``[B, T]``: each real token becomes ``unk_id`` with probability ``p`` (training only) --
    the model must read the context, not one memorable word. AWD-LSTM's embedding dropout drops whole vocabulary
    rows instead; on ids the effect is the same family, at no cost."""
    if not training or p == 0.0:
        return tokens
    hit = (torch.rand(tokens.shape, device=tokens.device) < p) & (tokens != pad_id)
    return tokens.masked_fill(hit, unk_id)
