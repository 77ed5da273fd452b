"""A count-based class-conditional n-gram language model, ``log p(text | class)``: the third expert of
:class:`~rnnlab.models.classifier.SequenceClassifier`'s hybrid (:class:`~rnnlab.models.classifier.NgramExpert`).

Per class, interpolated absolute discounting (Ney, Essen & Kneser 1994): with ``c(h, w)`` the count of symbol ``w``
after history ``h`` in that class's training texts, ``c(h)`` their total and ``N(h)`` the number of distinct
symbols seen after ``h``,

    p(w | h) = (max(c(h, w) - d, 0) + d N(h) p(w | h')) / c(h)      (h' = h without its oldest symbol)

down to a uniform distribution over the symbols; a history never seen in the class backs off to ``p(w | h')``.
The symbols are the classifier's token ids plus a boundary (id ``vocab_size``) that pads the start and ends every
text. The counts are sparse: sorted int64 keys with their values, looked up with ``torch.searchsorted``. They are
buffers of the module, so they travel in ``state_dict`` (checkpoints) and move with ``.to(device)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError


def _lookup(keys: Tensor, values: Tensor, query: Tensor) -> Tensor:
    """``values`` at ``query``'s positions in the sorted ``keys``; 0 where a query is absent."""
    if len(keys) == 0:
        return torch.zeros_like(query, dtype=values.dtype)
    query = query.contiguous()
    idx = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return torch.where(keys[idx] == query, values[idx], torch.zeros((), dtype=values.dtype, device=values.device))


TABLES = ("event_keys", "event_counts", "context_keys", "context_totals", "context_types")


class NgramLM(nn.Module):
    """Counts of one class-conditional n-gram model; :meth:`fit` them, then :meth:`scores` texts under every class.
    The counts are buffers (their sizes follow the data: loading a ``state_dict`` resizes them)."""

    def __init__(self, vocab_size: int, num_classes: int, order: int = 3, discount: float = 0.9) -> None:
        super().__init__()
        if order < 1:
            raise RnnlabError(f"NgramExpert's order must be at least 1, got {order}")
        if not 0 < discount < 1:
            raise RnnlabError(f"NgramExpert's discount must be between 0 and 1, got {discount}")
        self.symbols, self.num_classes, self.order, self.discount = vocab_size + 1, num_classes, order, discount
        self.histories = (self.symbols + 1) ** (order - 1)  # history codes are below this
        if num_classes * self.histories * self.symbols >= 2**62:
            raise RnnlabError(
                f"NgramExpert's order {order} is too high for a vocabulary of {vocab_size}: the n-gram keys "
                "would overflow int64; use a lower order"
            )
        for name in TABLES:
            self.register_buffer(name, torch.zeros(0, dtype=torch.long))

    @property
    def fitted(self) -> bool:
        return len(self.context_keys) > 0

    def get_extra_state(self) -> dict:
        return {"order": self.order, "discount": self.discount}

    def set_extra_state(self, state: dict) -> None:
        if (state["order"], state["discount"]) != (self.order, self.discount):
            raise RnnlabError(
                f"the checkpoint's n-gram counts are of order {state['order']} (discount "
                f"{state['discount']}), not the configured {self.order} ({self.discount})"
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in TABLES:  # the loaded counts' sizes, not the empty ones of a fresh module
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _keys(self, tokens: Tensor, lengths: Tensor, classes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``tokens [B, T]``, ``lengths [B]``, ``classes [B, K']`` -> history keys ``[B, K', T + 1, order]`` (longest
        history last), event keys of the same shape, and the mask ``[B, T + 1]`` of real positions (the last is the
        end boundary)."""
        B, T = tokens.shape
        device, n = tokens.device, self.order
        boundary = self.symbols - 1
        lengths = lengths.to(device)
        steps = torch.arange(T + 1, device=device)
        body = torch.cat([tokens.long(), tokens.new_zeros(B, 1).long()], 1)
        body = torch.where(steps[None] == lengths[:, None], boundary, body)
        seq = torch.cat([body.new_full((B, n - 1), boundary), body], 1)  # <b>^(n-1) x1 .. xn <b>
        codes = [torch.zeros(B, T + 1, dtype=torch.long, device=device)]
        for h in range(1, n):  # digit h: the symbol h steps back, stored + 1 so that lengths stay distinct
            codes.append(codes[-1] + (seq[:, n - 1 - h : n - 1 - h + T + 1] + 1) * (self.symbols + 1) ** (h - 1))
        history = classes[:, :, None, None] * self.histories + torch.stack(codes, -1)[:, None]
        event = history * self.symbols + body[:, None, :, None]
        return history, event, steps[None] <= lengths[:, None]

    def fit(self, sequences: list[Tensor], targets: Tensor, batch_size: int = 4096) -> "NgramLM":
        """Count the n-grams of ``sequences`` (1-D token tensors) under their ``targets`` classes."""
        histories, events = [], []
        for i in range(0, len(sequences), batch_size):
            chunk = [s.long() for s in sequences[i : i + batch_size]]
            lengths = torch.tensor([len(s) for s in chunk])
            tokens = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True) if chunk else torch.zeros(0, 0)
            history, event, mask = self._keys(tokens, lengths, torch.as_tensor(targets[i : i + batch_size])[:, None])
            histories.append(history[:, 0][mask].reshape(-1))
            events.append(event[:, 0][mask].reshape(-1))
        history, event = torch.cat(histories), torch.cat(events)
        event_keys, event_counts = torch.unique(event, return_counts=True)
        context_keys, context_totals = torch.unique(history, return_counts=True)
        # distinct symbols after each history: the unique events per history key
        context_types = torch.zeros_like(context_totals)
        context_types.index_add_(
            0, torch.searchsorted(context_keys, event_keys // self.symbols), torch.ones_like(event_keys)
        )
        device = self.event_keys.device
        for name, value in zip(TABLES, (event_keys, event_counts, context_keys, context_totals, context_types)):
            setattr(self, name, value.to(device))
        return self

    def scores(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``log p(tokens, <end> | c)`` for every class ``c``: ``[B, num_classes]``."""
        if not self.fitted:
            raise RnnlabError(
                "the n-gram expert has no counts yet: fit the model first, or load a checkpoint "
                "(--ckpt_path) that has them"
            )
        t = {name: getattr(self, name) for name in TABLES}
        B, K, d = len(tokens), self.num_classes, self.discount
        classes = torch.arange(K, device=tokens.device).expand(B, K)
        history, event, mask = self._keys(tokens, lengths, classes)
        p = torch.full(event.shape[:-1], 1.0 / self.symbols, dtype=torch.float64, device=tokens.device)
        for h in range(self.order):
            total = _lookup(t["context_keys"], t["context_totals"], history[..., h]).double()
            types = _lookup(t["context_keys"], t["context_types"], history[..., h]).double()
            count = _lookup(t["event_keys"], t["event_counts"], event[..., h]).double()
            smoothed = ((count - d).clamp(min=0) + d * types * p) / total.clamp(min=1)
            p = torch.where(total > 0, smoothed, p)
        return (p.log() * mask[:, None]).sum(-1).float()
