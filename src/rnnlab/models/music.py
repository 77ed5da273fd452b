"""Polyphonic music: predict the next piano-roll step (88 keys) from the previous ones; write MIDI and pictures."""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric

from rnnlab.contract import Batch
from rnnlab.errors import RnnlabError
from rnnlab.models.base import RnnlabModule
from rnnlab.nn.recurrent import Recurrent, RecurrentSpec
from rnnlab.optim import OptimizerCallable, Schedule, WarmupCosine, adamw
from rnnlab.pianoroll import KEYS


def step_nll(logits: Tensor, target: Tensor) -> Tensor:
    """Negative log-likelihood of each step under independent Bernoulli keys: ``[..., 88] -> [...]`` (nats, summed
    over the keys -- the figure the papers report, averaged over steps)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").sum(-1)


class PianoRollModel(RnnlabModule):
    """The 88-key roll -> :class:`~rnnlab.nn.recurrent.Recurrent` -> 88 logits.

    ``head="independent"``: one independent Bernoulli per key given the past (the setting of the published JSB
    figures: Boulanger-Lewandowski 2012, Bai et al. 2018). ``head="autoregressive"``: the keys of a step are modelled
    one after another, lowest to highest, ``p(v_k | v_<k, past)`` with logit ``a_k(h_t) + sum_{j<k} W_kj v_j`` (a
    strictly lower-triangular ``W``: the fully visible sigmoid belief net, the simplest form of the RNN-NADE idea) --
    a different factorisation, so its figure is reported apart.

    ``conv_kernel > 0`` adds a pitch-relative term to the logits: a convolution over the keys of the previous step
    (``conv_kernel`` semitones wide, ``conv_channels`` ReLU detectors, then one output per key), the same weights at
    every key, so what it learns about a chord or a voice moving by a step holds in every key; the recurrent state
    and its linear head keep everything that depends on the past beyond one step. ``conv_refine`` also shows it the
    head's own probabilities, so a key's logit can follow what the head expects around it. With 229 training
    chorales this shared term is what moves JSB below 8 nats (see the README).

    Logs ``{stage}/nll``: nats per time step, summed over keys, mean over every step of the split except each piece's
    first -- the protocol of the published figures (Bai et al. 2018 feed ``piece[:-1]`` and score ``piece[1:]``: the
    first step is context, never predicted); ``{stage}/nll_all`` also scores the first step, predicted from silence
    (training does, so that a piece can be generated from scratch). ``{stage}/frame_acc``: Bay et al. 2009,
    TP / (TP + FP + FN) over the scored steps, notes on at p > 0.5.
    """

    inference_hparams = ("generate_steps", "temperature", "sample_seed")

    def __init__(
        self,
        num_features: int = KEYS,
        rnn: RecurrentSpec = RecurrentSpec("gru", "torch", 256, 1, False, packed=False),
        dropout: float = 0.3,
        input_dropout: float = 0.1,
        head: Literal["independent", "autoregressive"] = "independent",
        conv_kernel: int = 0,
        conv_channels: int = 128,
        conv_refine: bool = False,
        generate_steps: int = 64,
        temperature: float = 1.0,
        sample_seed: Optional[int] = 0,
        optimizer: OptimizerCallable = adamw(3e-3, weight_decay=1e-3),
        scheduler: Schedule = lazy_instance(WarmupCosine, warmup=0.05),
    ) -> None:
        super().__init__()
        rnn = self.init_parts(rnn, optimizer, scheduler)
        if rnn.bidirectional:
            raise RnnlabError("a next-step model reads left to right: set rnn.bidirectional false")
        hidden_size, num_layers, cell, impl = rnn.hidden_size, rnn.num_layers, rnn.cell, rnn.impl
        if num_features != KEYS:
            raise RnnlabError(f"PianoRollModel reads {KEYS}-key piano rolls; the data gives {num_features} features")
        self.input_dropout = nn.Dropout(input_dropout)
        self.rnn = Recurrent(
            KEYS, hidden_size, cell=cell, impl=impl, num_layers=num_layers, dropout=dropout, packed=rnn.packed
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, KEYS)
        if head not in ("independent", "autoregressive"):
            raise RnnlabError(f"head must be 'independent' or 'autoregressive', got {head!r}")
        if conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
            raise RnnlabError(f"conv_kernel must be 0 (off) or an odd number of semitones, got {conv_kernel}")
        self.conv = (
            nn.Sequential(  # the same weights at every key: what the notes around a key say, in any key
                nn.Conv1d(2 if conv_refine else 1, conv_channels, conv_kernel, padding=conv_kernel // 2),
                nn.ReLU(),
                nn.Conv1d(conv_channels, 1, 1),
            )
            if conv_kernel
            else None
        )
        self.within = nn.Parameter(torch.zeros(KEYS, KEYS)) if head == "autoregressive" else None
        self.register_buffer("lower", torch.tril(torch.ones(KEYS, KEYS), diagonal=-1), persistent=False)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_nll", MeanMetric())
            setattr(self, f"{stage}_nll_all", MeanMetric())
            for part in ("tp", "fp", "fn"):
                setattr(self, f"{stage}_{part}", SumMetric())

    def forward(self, x: Tensor, lengths: Tensor, state=None):
        """``x [B, T, 88]`` (steps before each target step) -> logits ``[B, T, 88]`` and the final state."""
        out, state = self.rnn(self.input_dropout(x.float()), lengths, state)
        logits = self.head(self.dropout(out))
        if self.conv is not None:
            B, T, K = x.shape
            z = x.float().reshape(B * T, 1, K)
            if self.hparams.conv_refine:  # the recurrent head's own probabilities, as a second channel
                z = torch.cat([z, torch.sigmoid(logits).reshape(B * T, 1, K)], 1)
            logits = logits + self.conv(z).view(B, T, K)
        return logits, state

    def step_logits(self, logits: Tensor, notes: Tensor) -> Tensor:
        """Per-key logits given the step's own notes below each key (autoregressive head; identity otherwise)."""
        if self.within is None:
            return logits
        return logits + notes.float() @ (self.within * self.lower).T

    def _nll(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-step NLL, logits and targets of the real (unpadded) steps, and which of them are a piece's first."""
        logits, _ = self(batch.features, batch.lengths)
        logits = self.step_logits(logits, batch.target.clamp(min=0))
        valid = batch.target[..., 0] >= 0  # padding is -100
        first = torch.zeros_like(valid)
        first[:, 0] = True
        nll = step_nll(logits, batch.target.clamp(min=0))
        return nll[valid], logits[valid], batch.target[valid], first[valid]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        nll, _, _, _ = self._nll(batch)
        loss = nll.mean()
        self.log("train/nll", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=nll.numel())
        return loss

    def evaluate(self, batch: Batch, stage: str) -> None:
        nll, logits, target, first = self._nll(batch)
        getattr(self, f"{stage}_nll_all").update(nll)
        getattr(self, f"{stage}_nll").update(nll[~first])
        on, gold = logits[~first] > 0, target[~first] > 0.5
        getattr(self, f"{stage}_tp").update((on & gold).sum())
        getattr(self, f"{stage}_fp").update((on & ~gold).sum())
        getattr(self, f"{stage}_fn").update((~on & gold).sum())

    def epoch_end(self, stage: str) -> None:
        tp, fp, fn = (getattr(self, f"{stage}_{p}").compute() for p in ("tp", "fp", "fn"))
        self.log(f"{stage}/nll", getattr(self, f"{stage}_nll").compute(), prog_bar=True)
        self.log(f"{stage}/nll_all", getattr(self, f"{stage}_nll_all").compute())
        self.log(f"{stage}/frame_acc", tp / (tp + fp + fn).clamp(min=1))
        for name in ("nll", "nll_all", "tp", "fp", "fn"):
            getattr(self, f"{stage}_{name}").reset()

    def predict_step(self, batch, batch_idx: int) -> dict:
        primer, index = batch
        hp = self.hparams
        seed = None if hp.sample_seed is None else hp.sample_seed + index
        roll = self.generate(hp.generate_steps, primer, hp.temperature, seed)
        return {"index": torch.tensor([index]), "roll": [roll.cpu()]}

    @torch.no_grad()
    def generate(
        self, steps: int, primer: Optional[Tensor] = None, temperature: float = 1.0, seed: Optional[int] = None
    ) -> Tensor:
        """A piano roll ``[len(primer) + steps, 88]``: the primer (``[T0, 88]``, may be None) continued by
        ``steps`` sampled steps, each key drawn from its Bernoulli (``temperature`` scales the logits; 0: p > 0.5)."""
        if steps < 0:
            raise RnnlabError(f"steps must be >= 0, got {steps}")
        was_training = self.training
        self.eval()
        g = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        roll = primer.to(self.device).float() if primer is not None else torch.zeros(0, KEYS, device=self.device)
        x = torch.cat([torch.zeros(1, KEYS, device=self.device), roll])  # a silent frame, then the primer
        logits, state = self(x.unsqueeze(0), torch.tensor([len(x)]))
        nxt = logits[0, -1]
        out = [roll]
        for _ in range(steps):
            step = self._sample_step(nxt, temperature, g)
            out.append(step.unsqueeze(0))
            logits, state = self(step.view(1, 1, KEYS), torch.tensor([1]), state)
            nxt = logits[0, -1]
        self.train(was_training)
        return torch.cat(out)

    def _sample_step(self, logits: Tensor, temperature: float, g: Optional[torch.Generator]) -> Tensor:
        def draw(z: Tensor) -> Tensor:
            return (z > 0).float() if temperature == 0 else torch.bernoulli(torch.sigmoid(z / temperature), generator=g)

        if self.within is None:
            return draw(logits)
        step = torch.zeros(KEYS, device=logits.device)
        w = self.within * self.lower
        for k in range(KEYS):  # lowest key first, each given the ones below it
            step[k] = draw(logits[k : k + 1] + w[k] @ step)
        return step
