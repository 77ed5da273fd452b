"""Language models that write: ``p(x_1..x_n) = prod_t p(x_t | x_<t)``, teacher-forced in training, sampled one step
at a time with each output fed back in; optionally conditioned on a category (one-to-many). Character or word level;
a word model may pre-train a classifier's encoder (bidirectional, adaptive softmax: ``configs/imdb_lm_pretrain.yaml``)."""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric

from rnnlab.contract import IGNORE_INDEX, Batch
from rnnlab.errors import RnnlabError
from rnnlab.models.base import RnnlabModule
from rnnlab.nn.dropout import LockedDropout, drop_words
from rnnlab.nn.functional import last_step
from rnnlab.nn.recurrent import Recurrent, RecurrentSpec, State
from rnnlab.optim import OneCycle, OptimizerCallable, Schedule, adamw


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

    Categories (``num_classes > 0``, linked from the DataModule; e.g. 18 languages): ``Batch.category [B]`` holds
    each sequence's category id; its embedding joins every step's input (``condition="input"``) or sets the initial
    hidden state (``"state"``).

    Pre-training a classifier's encoder (word level, ELMo-style): ``bidirectional`` (one layer, no categories,
    stateless windows) trains a forward model that predicts the next token from the forward half of the outputs and
    a backward model that predicts the previous token from the backward half -- in one layer the two directions never
    see each other, so neither sees its own target. The loss is the mean of the two; generation uses the forward half.
    Its ``embedding``/``rnn`` weights load into :class:`~rnnlab.models.SequenceClassifier`
    (``pretrained_encoder``). ``adaptive_cutoffs`` (e.g. ``[2000, 10000]``) replaces the full softmax by
    ``nn.AdaptiveLogSoftmaxWithLoss`` (frequent words in a small head, rare ones in cheaper clusters: the affordable
    word softmax on a CPU). ``locked_dropout`` makes ``dropout`` and ``embedding_dropout`` variational (one mask per
    sequence); ``word_dropout`` reads a share of the input tokens as ``<unk>``.

    Logs ``{stage}/loss`` (nats per token; with ``bidirectional`` the mean of both directions), ``{stage}/bpc``
    (bits per token) and ``{stage}/ppl`` (perplexity; of the forward model). ``predict`` generates
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
        rnn: RecurrentSpec = RecurrentSpec("lstm", "torch", 512, 2, False, packed=False),
        dropout: float = 0.2,
        embedding_dropout: float = 0.0,
        tie_weights: bool = False,
        category_dim: int = 32,
        condition: Literal["input", "state"] = "input",
        max_new: int = 300,
        temperature: float = 0.8,
        top_k: Optional[int] = None,
        sample_seed: Optional[int] = 0,
        optimizer: OptimizerCallable = adamw(2e-3),
        scheduler: Schedule = lazy_instance(OneCycle, warmup=0.05),
        adaptive_cutoffs: Optional[list[int]] = None,
        locked_dropout: bool = False,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        rnn = self.init_parts(rnn, optimizer, scheduler)
        hidden_size, num_layers, cell, impl, bidirectional = (
            rnn.hidden_size,
            rnn.num_layers,
            rnn.cell,
            rnn.impl,
            rnn.bidirectional,
        )
        if condition not in ("input", "state"):
            raise RnnlabError(f"condition must be 'input' or 'state', got {condition!r}")
        if bidirectional and (num_layers != 1 or num_classes > 0):
            raise RnnlabError(
                "bidirectional language models have one layer and no categories (a second bidirectional layer "
                "would show each direction the word it must predict): set num_layers: 1"
            )
        if adaptive_cutoffs is not None:
            cuts = list(adaptive_cutoffs)
            if tie_weights or not cuts or cuts != sorted(set(cuts)) or cuts[0] < 1:
                raise RnnlabError(
                    f"adaptive_cutoffs must be increasing positive word ranks, got {adaptive_cutoffs}"
                    + ("; and it does not combine with tie_weights" if tie_weights else "")
                )
            if cuts[-1] >= vocab_size:  # a smaller vocabulary than the config was written for: fewer clusters
                cuts = [c for c in cuts if c < vocab_size]
                rank_zero_info(f"adaptive_cutoffs: the vocabulary has {vocab_size} words, so the clusters are {cuts}")
            if hidden_size // 4 ** len(cuts) < 1:  # cluster i projects to hidden_size / 4^(i+1) features
                raise RnnlabError(
                    f"adaptive_cutoffs {cuts}: the last of its {len(cuts)} clusters would project hidden_size "
                    f"{hidden_size} to {hidden_size / 4 ** len(cuts):.2g} features; give fewer cutoffs or a larger "
                    f"hidden_size (at least {4 ** len(cuts)})"
                )
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.embedding_dropout = LockedDropout(embedding_dropout) if locked_dropout else nn.Dropout(embedding_dropout)
        input_size = embedding_dim
        self.category: Optional[nn.Embedding] = None
        if num_classes > 0:
            self.category = nn.Embedding(num_classes, category_dim)
            if condition == "input":
                input_size += category_dim
            else:
                self.category_to_state = nn.Linear(category_dim, num_layers * hidden_size)
        self.rnn = Recurrent(
            input_size,
            hidden_size,
            cell=cell,
            impl=impl,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            packed=rnn.packed,
        )
        self.dropout = LockedDropout(dropout) if locked_dropout else nn.Dropout(dropout)
        self.adaptive = adaptive_cutoffs is not None
        if self.adaptive and cuts:
            self.head = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, cuts, div_value=4.0)
        elif self.adaptive:  # every cutoff beyond the vocabulary: one full softmax, read through the same interface
            self.head = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, [vocab_size - 1], div_value=1.0)
        elif tie_weights:
            if hidden_size != embedding_dim:
                self.proj = nn.Linear(hidden_size, embedding_dim)
            self.head = nn.Linear(embedding_dim, vocab_size)
            self.head.weight = self.embedding.weight
        else:
            self.head = nn.Linear(hidden_size, vocab_size)
        self._carry: dict[str, Optional[State]] = {}
        self.stateful = False
        splits = ("train", "val", "test")
        self._mean_nll = nn.ModuleDict({k: MeanMetric() for s in splits for k in (f"{s}_forward", f"{s}_backward")})

    # ------------------------------------------------------------------ model
    def forward(
        self, tokens: Tensor, lengths: Tensor, state: Optional[State] = None, category: Optional[Tensor] = None
    ) -> tuple[Tensor, State]:
        """``tokens [B, T]`` (and ``category [B]`` for a conditional model) -> logits ``[B, T, V]`` (log-probabilities
        with ``adaptive_cutoffs``; of the forward model when ``bidirectional``) and the final state."""
        out, state = self.features(tokens, lengths, state, category)
        return self.scores(out[..., : self.head_size]), state

    @property
    def head_size(self) -> int:
        """Features per direction that the output layer reads."""
        hp = self.hparams
        return hp.embedding_dim if hp.tie_weights else hp.hidden_size

    def scores(self, out: Tensor) -> Tensor:
        """Output features ``[..., head_size]`` -> logits (or, adaptive, log-probabilities) ``[..., V]``."""
        if not self.adaptive:
            return self.head(out)
        with torch.autocast(out.device.type, enabled=False):  # its index_copy_ mixes dtypes under autocast
            return self.head.log_prob(out.flatten(0, -2).float()).view(*out.shape[:-1], -1)

    def nll(self, out: Tensor, target: Tensor) -> tuple[Tensor, int]:
        """Summed negative log-likelihood of ``target [N]`` (-100: ignored) given features ``out [N, head_size]``,
        and how many targets counted."""
        keep = target != IGNORE_INDEX
        out, target = out[keep], target[keep]
        if not self.adaptive:
            return F.cross_entropy(self.head(out).float(), target, reduction="sum"), len(target)
        with torch.autocast(out.device.type, enabled=False):  # in fp32: see scores()
            nll = -self.head(out.float(), target).output.sum()
        # a batch with no target in a rare-word cluster leaves that cluster without a gradient; under DDP every
        # rank must produce a gradient for every parameter, so each one takes part (with weight 0)
        return nll + 0.0 * sum(p.sum() for p in self.head.parameters()), len(target)

    def log_likelihood(
        self, tokens: Tensor, lengths: Tensor, bos: int, eos: int, category: Optional[Tensor] = None
    ) -> Tensor:
        """``[B]``: ``log p(x_1 .. x_n, eos | bos, category)`` of each right-padded row of ``tokens [B, T]``
        (the model reads ``bos x_1 .. x_n`` and is scored on ``x_1 .. x_n eos``); full softmax only."""
        B, T = tokens.shape
        inputs = torch.cat([tokens.new_full((B, 1), bos), tokens], 1)
        targets = torch.cat([tokens, tokens.new_zeros(B, 1)], 1)
        lengths = lengths.to(tokens.device)
        targets[torch.arange(B, device=tokens.device), lengths] = eos
        logits, _ = self(inputs, lengths + 1, None, category)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0]
        mask = torch.arange(T + 1, device=tokens.device)[None] <= lengths[:, None]
        return (logp * mask).sum(1)

    def features(
        self, tokens: Tensor, lengths: Tensor, state: Optional[State] = None, category: Optional[Tensor] = None
    ) -> tuple[Tensor, State]:
        """The recurrent outputs after dropout (and the tied projection): ``[B, T, head_size * directions]``."""
        if (category is None) != (self.category is None):
            raise RnnlabError(
                "this model "
                + (
                    "needs a category per sequence (a conditional model)"
                    if self.category is not None
                    else "has no categories"
                )
                + " but the data "
                + ("gives none" if category is None else "gives them")
            )
        tokens = drop_words(tokens.long(), self.hparams.word_dropout, self.training, pad_id=self.hparams.pad_id)
        x = self.embedding_dropout(self.embedding(tokens))
        if category is not None:
            c = self.category(category.long())  # [B, D]
            if self.hparams.condition == "input":
                x = torch.cat([x, c[:, None].expand(-1, x.shape[1], -1)], dim=-1)
            elif state is None:
                h0 = torch.tanh(self.category_to_state(c)).view(len(x), self.hparams.num_layers, -1)
                h0 = h0.transpose(0, 1).contiguous()
                state = (h0, torch.zeros_like(h0)) if self.hparams.cell == "lstm" else h0
        out, state = self.rnn(x, lengths, state)
        out = self.dropout(out)
        if self.hparams.tie_weights and hasattr(self, "proj"):
            out = self.proj(out)
        return out, state

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
        category: Optional[Tensor] = None,
    ) -> Tensor:
        """Continue each prompt (``[B, T]``, right-padded, ``lengths [B]``; ``category [B]`` for a conditional model)
        by ``max_new`` ids, never ``banned`` ones (default ``<pad>``, ``<unk>``).

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
        logits, state = self(prompt, lengths, None, category)
        next_logits = last_step(logits, lengths.to(logits.device))
        out = torch.full((B, max_new), -1, dtype=torch.long, device=prompt.device)
        done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
        ones = torch.ones(B, dtype=torch.long)
        heads = [list(h or []) for h in (line_heads or [None] * B)]
        ends = set(int(i) for i in line_ends)
        at_start = [int(prompt[b, lengths[b] - 1]) in ends or int(lengths[b]) == 1 for b in range(B)]
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
            logits, state = self(nxt.unsqueeze(1), ones, state, category)
            next_logits = logits[:, -1]
        self.train(was_training)
        return out

    # --------------------------------------------------------------- Lightning
    def setup(self, stage: str) -> None:
        self.stateful = self.task.stateful
        if self.stateful and self.hparams.bidirectional:
            raise RnnlabError(
                "a bidirectional language model reads each window from an empty state: set "
                "data.init_args.stateful: false"
            )

    def _state_for(self, split: str, batch_size: int) -> Optional[State]:
        if not self.stateful:
            return None
        state = self._carry.get(split)
        h = state[0] if isinstance(state, tuple) else state
        if h is None or h.shape[1] != batch_size:
            return None
        return state

    def _step(self, batch: Batch, split: str) -> Tensor:
        out, state = self.features(batch.tokens, batch.lengths, self._state_for(split, len(batch)), batch.category)
        if self.stateful:
            self._carry[split] = detach_state(state)
        d = self.head_size
        nll, n = self.nll(out[..., :d].flatten(0, 1), batch.target.flatten())
        forward_loss = nll / max(n, 1)
        loss = forward_loss
        on_step, sync = split == "train", split != "train"
        if self.hparams.bidirectional:  # the backward half predicts the token before each position
            previous = torch.full_like(batch.target, IGNORE_INDEX)
            previous[:, 1:] = batch.tokens[:, :-1]
            previous = previous.masked_fill(batch.target == IGNORE_INDEX, IGNORE_INDEX)
            nll_b, n_b = self.nll(out[..., d:].flatten(0, 1), previous.flatten())
            backward_loss = nll_b / max(n_b, 1)
            loss = (forward_loss + backward_loss) / 2
            self._mean_nll[f"{split}_backward"].update(backward_loss.detach(), n_b)
        self._mean_nll[f"{split}_forward"].update(forward_loss.detach(), n)
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=sync)
        self.log(f"{split}/bpc", forward_loss / math.log(2), on_step=False, on_epoch=True, batch_size=n, sync_dist=sync)
        return loss

    def _log_perplexity(self, split: str) -> None:
        """``{split}/ppl`` (and ``ppl_backward``): exp of the epoch's mean NLL per token (not a mean of per-batch
        perplexities); word models only -- characters have ``bpc``."""
        word_model = self.adaptive or self.hparams.bidirectional
        for key, name in ((f"{split}_forward", "ppl"), (f"{split}_backward", "ppl_backward")):
            metric = self._mean_nll[key]
            if word_model and metric.update_count:
                self.log(f"{split}/{name}", metric.compute().exp(), sync_dist=False)
            metric.reset()

    def on_train_epoch_start(self) -> None:
        self._carry["train"] = None

    def on_train_epoch_end(self) -> None:
        self._log_perplexity("train")

    def epoch_end(self, stage: str) -> None:
        self._log_perplexity(stage)

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
            category=batch.category,
        )
        return {"index": batch.index, "generated": generated}
