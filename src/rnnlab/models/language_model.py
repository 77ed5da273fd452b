"""Character language models that write: ``p(x_1..x_n) = prod_t p(x_t | x_<t)``, teacher-forced in training,
sampled one step at a time with each output fed back in; optionally conditioned on a category (one-to-many)."""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.contract import IGNORE_INDEX, Batch
from rnnlab.errors import RnnlabError
from rnnlab.models.base import OptimizerName, RnnlabModule, SchedulerName
from rnnlab.nn.functional import last_step
from rnnlab.nn.recurrent import Recurrent, State


def detach_state(state: State) -> State:
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    banned: Sequence[int] = (),
) -> Tensor:
    """One id per row of ``logits [B, V]``: ``temperature`` 0 is greedy (argmax); ``top_k`` keeps the k most likely;
    ``banned`` ids (padding, unknown, start symbols) are never produced."""
    if temperature < 0:
        raise RnnlabError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float()
    if banned:
        logits = logits.index_fill(-1, torch.tensor(list(banned), device=logits.device), float("-inf"))
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        if top_k < 1:
            raise RnnlabError(f"top_k must be >= 1, got {top_k}")
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class LanguageModel(RnnlabModule):
    """embedding (+ a category embedding) -> :class:`~rnnlab.nn.recurrent.Recurrent` (unidirectional) -> dropout ->
    linear over the vocabulary (optionally tied to the embedding).

    Truncated BPTT: with a DataModule whose ``stateful`` is true (parallel streams, see
    :class:`~rnnlab.data.charlm.CharCorpusDataModule`) the hidden state is carried from one batch to the next,
    detached, and reset at the start of every epoch and of every validation; otherwise every batch starts from zero.

    Categories (``num_classes > 0``, linked from the DataModule; e.g. 18 languages): ``tokens [B, T, 2]`` hold the
    character and the category id per step; the category embedding joins every step's input (``condition="input"``)
    or sets the initial hidden state (``"state"``).

    Logs ``{stage}/loss`` (nats per character) and ``{stage}/bpc`` (bits per character). ``predict`` generates
    ``max_new`` characters after each prompt (stopping at the end symbol when the data has one) with
    ``temperature``, ``top_k`` and ``sample_seed`` (the same seed and inputs give the same text).
    """

    inference_hparams = ("max_new", "temperature", "top_k", "sample_seed")  # predict may change them

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 0,
        pad_id: int = 0,
        embedding_dim: int = 64,
        hidden_size: int = 512,
        num_layers: int = 2,
        cell: Literal["lstm", "gru", "rnn"] = "lstm",
        impl: Literal["torch", "handwritten"] = "torch",
        dropout: float = 0.2,
        embedding_dropout: float = 0.0,
        tie_weights: bool = False,
        category_dim: int = 32,
        condition: Literal["input", "state"] = "input",
        max_new: int = 300,
        temperature: float = 0.8,
        top_k: Optional[int] = None,
        sample_seed: Optional[int] = 0,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        optimizer: OptimizerName = "adamw",
        scheduler: SchedulerName = "onecycle",
        warmup: float = 0.05,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        if condition not in ("input", "state"):
            raise RnnlabError(f"condition must be 'input' or 'state', got {condition!r}")
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        input_size = embedding_dim
        self.category: Optional[nn.Embedding] = None
        if num_classes > 0:
            self.category = nn.Embedding(num_classes, category_dim)
            if condition == "input":
                input_size += category_dim
            else:
                self.category_to_state = nn.Linear(category_dim, num_layers * hidden_size)
        self.rnn = Recurrent(
            input_size, hidden_size, cell=cell, impl=impl, num_layers=num_layers, bidirectional=False, dropout=dropout
        )
        self.dropout = nn.Dropout(dropout)
        if tie_weights:
            if hidden_size != embedding_dim:
                self.proj = nn.Linear(hidden_size, embedding_dim)
            self.head = nn.Linear(embedding_dim, vocab_size)
            self.head.weight = self.embedding.weight
        else:
            self.head = nn.Linear(hidden_size, vocab_size)
        self._carry: dict[str, Optional[State]] = {}
        self.stateful = False

    # ------------------------------------------------------------------ model
    def forward(self, tokens: Tensor, lengths: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """``tokens [B, T]`` (or ``[B, T, 2]`` with categories) -> logits ``[B, T, V]`` and the final state."""
        if tokens.dim() == 3:
            tokens, categories = tokens[..., 0], tokens[..., 1]
        else:
            categories = None
        if (categories is None) != (self.category is None):
            raise RnnlabError(
                "this model "
                + (
                    "needs a category per step (a conditional model)"
                    if self.category is not None
                    else "has no categories"
                )
                + " but the data "
                + ("gives none" if categories is None else "gives them")
            )
        x = self.embedding_dropout(self.embedding(tokens.long()))
        if categories is not None:
            c = self.category(categories.long())
            if self.hparams.condition == "input":
                x = torch.cat([x, c], dim=-1)
            elif state is None:
                h0 = torch.tanh(self.category_to_state(c[:, 0])).view(len(x), self.hparams.num_layers, -1)
                h0 = h0.transpose(0, 1).contiguous()
                state = (h0, torch.zeros_like(h0)) if self.hparams.cell == "lstm" else h0
        out, state = self.rnn(x, lengths, state)
        out = self.dropout(out)
        if self.hparams.tie_weights and hasattr(self, "proj"):
            out = self.proj(out)
        return self.head(out), state

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        lengths: Optional[Tensor] = None,
        max_new: int = 100,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        eos_id: Optional[int] = None,
        seed: Optional[int] = None,
        banned: Sequence[int] = (0, 1),
        line_heads: Optional[list[Optional[list[int]]]] = None,
        line_ends: Sequence[int] = (),
    ) -> Tensor:
        """Continue each prompt (``[B, T]`` or ``[B, T, 2]``, right-padded, ``lengths [B]``) by ``max_new`` ids,
        never ``banned`` ones (default ``<pad>``, ``<unk>``).

        ``line_heads`` (per row, ids or None) forces the first symbol of each line -- at the start and after any of
        ``line_ends`` -- to the next given id, until they run out: an acrostic (藏头诗).

        Returns ``[B, max_new]`` generated ids, ``-1`` after a row's end symbol (``eos_id``; not included)."""
        was_training = self.training
        self.eval()
        B = prompt.shape[0]
        lengths = torch.full((B,), prompt.shape[1], dtype=torch.long) if lengths is None else lengths
        generator = None
        if seed is not None:
            generator = torch.Generator(device=prompt.device).manual_seed(seed)
        logits, state = self(prompt, lengths)
        next_logits = last_step(logits, lengths.to(logits.device))
        category = prompt[:, :1, 1] if prompt.dim() == 3 else None
        out = torch.full((B, max_new), -1, dtype=torch.long, device=prompt.device)
        done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
        ones = torch.ones(B, dtype=torch.long)
        heads = [list(h or []) for h in (line_heads or [None] * B)]
        ends = set(int(i) for i in line_ends)
        last = prompt[..., 0] if prompt.dim() == 3 else prompt
        at_start = [int(last[b, lengths[b] - 1]) in ends or int(lengths[b]) == 1 for b in range(B)]
        for t in range(max_new):
            nxt = sample_next(next_logits, temperature, top_k, generator, banned)
            for b in range(B):
                if heads[b] and at_start[b]:
                    nxt[b] = heads[b].pop(0)
                at_start[b] = int(nxt[b]) in ends
            if eos_id is not None:
                done |= nxt == eos_id
            out[:, t] = nxt.masked_fill(done, -1)
            if bool(done.all()):
                break
            step = nxt.unsqueeze(1)
            if category is not None:
                step = torch.stack([step, category], dim=-1)
            logits, state = self(step, ones, state)
            next_logits = logits[:, -1]
        self.train(was_training)
        return out

    # --------------------------------------------------------------- Lightning
    def setup(self, stage: str) -> None:
        self.stateful = self.task.stateful

    def _state_for(self, split: str, batch_size: int) -> Optional[State]:
        if not self.stateful:
            return None
        state = self._carry.get(split)
        h = state[0] if isinstance(state, tuple) else state
        if h is None or h.shape[1] != batch_size:
            return None
        return state

    def _step(self, batch: Batch, split: str) -> Tensor:
        logits, state = self(batch.tokens, batch.lengths, self._state_for(split, len(batch)))
        if self.stateful:
            self._carry[split] = detach_state(state)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch.target.flatten(), ignore_index=IGNORE_INDEX)
        n = int((batch.target != IGNORE_INDEX).sum())
        on_step = split == "train"
        self.log(
            f"{split}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=not on_step
        )
        self.log(f"{split}/bpc", loss / math.log(2), on_step=False, on_epoch=True, batch_size=n, sync_dist=not on_step)
        return loss

    def on_train_epoch_start(self) -> None:
        self._carry["train"] = None

    def on_validation_epoch_start(self) -> None:
        self._carry["val"] = None

    def on_test_epoch_start(self) -> None:
        self._carry["test"] = None

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def evaluate(self, batch: Batch, stage: str) -> None:
        self._step(batch, stage)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        task, hp = self.task, self.hparams
        seed = None if hp.sample_seed is None else hp.sample_seed + batch_idx
        heads = [task.predict_item(int(i)).get("line_heads") for i in batch.index]
        generated = self.generate(
            batch.tokens,
            batch.lengths,
            hp.max_new,
            hp.temperature,
            hp.top_k,
            eos_id=task.eos_id,
            seed=seed,
            banned=task.banned_ids(),
            line_heads=heads,
            line_ends=tuple(task.line_end_ids),
        )
        return {"index": batch.index, "generated": generated}
