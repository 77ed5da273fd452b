"""A linear-chain conditional random field: log-likelihood by the forward algorithm, Viterbi decoding.

``score(y) = start[y_1] + sum_t emission[t, y_t] + sum_t transition[y_{t-1}, y_t] + end[y_T]`` and
``p(y | x) = exp(score(y)) / sum_y' exp(score(y'))``. Batches are right-padded: ``mask [B, T]`` is True on real steps
and every sequence has at least one. Computed in float32 whatever the autocast precision.
(pytorch-crf does the same but has had no release since 2019; this is its algorithm in 70 lines, tested against brute
force enumeration.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CRF(nn.Module):
    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))  # [from, to]

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """``log p(tags | emissions)`` per sequence: ``emissions [B, T, K]``, ``tags [B, T]``, ``mask [B, T]`` -> ``[B]``."""
        emissions = emissions.float()
        tags = tags.masked_fill(~mask, 0)
        return self._score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def _score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        m = mask.float()
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, T]
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # [B, T-1]
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return self.start[tags[:, 0]] + (emit * m).sum(1) + (trans * m[:, 1:]).sum(1) + self.end[last]

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        alpha = self.start + emissions[:, 0]  # [B, K]
        for t in range(1, emissions.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """The most likely tag sequence (Viterbi): ``[B, T]``, 0 on padding."""
        emissions = emissions.float()
        B, T, K = emissions.shape
        score = self.start + emissions[:, 0]
        keep = torch.arange(K, device=emissions.device).expand(B, K)
        pointers = []
        for t in range(1, T):
            best, arg = (score.unsqueeze(2) + self.transitions).max(dim=1)  # over the previous tag
            on = mask[:, t : t + 1]
            score = torch.where(on, best + emissions[:, t], score)
            pointers.append(torch.where(on, arg, keep))  # padding: stay on the same tag
        tag = (score + self.end).argmax(1)
        path = [tag]
        for arg in reversed(pointers):
            tag = arg.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        return torch.stack(path[::-1], dim=1).masked_fill(~mask, 0)
