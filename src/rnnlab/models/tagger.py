"""Synchronous many-to-many: one tag per input step (part of speech per word, B/M/E/S per Chinese character)."""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from rnnlab.contract import IGNORE_INDEX, Batch
from rnnlab.errors import RnnlabError
from rnnlab.metrics import SpanF1
from rnnlab.models.base import RnnlabModule
from rnnlab.nn.crf import CRF
from rnnlab.nn.recurrent import Recurrent, RecurrentSpec
from rnnlab.optim import OneCycle, OptimizerCallable, Schedule, adamw

UNK_ID = 1  # every rnnlab vocabulary: <pad> 0, <unk> 1


class CharWordEncoder(nn.Module):
    """A word from its characters: ``[N, W]`` character ids (0 = padding) -> ``[N, output_size]``.

    ``lstm``: a BiLSTM over the characters (shared driver), the last forward and first backward states concatenated
    (Lample et al. 2016); ``cnn``: a width-3 convolution, max-pooled over the characters (Ma & Hovy 2016).
    """

    def __init__(self, num_chars: int, embedding_dim: int, hidden_size: int, kind: str, impl: str) -> None:
        super().__init__()
        self.kind = kind
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=0)
        if kind == "lstm":
            self.rnn = Recurrent(embedding_dim, hidden_size, cell="lstm", impl=impl, bidirectional=True)
            self.output_size = 2 * hidden_size
        elif kind == "cnn":
            self.conv = nn.Conv1d(embedding_dim, 2 * hidden_size, kernel_size=3, padding=1)
            self.output_size = 2 * hidden_size
        else:
            raise RnnlabError(f"char_encoder must be 'lstm', 'cnn' or 'none', got {kind!r}")

    def forward(self, chars: Tensor) -> Tensor:
        lengths = (chars != 0).sum(1).clamp(min=1)
        x = self.embedding(chars)
        if self.kind == "lstm":
            _, (h_n, _) = self.rnn(x, lengths)
            return torch.cat([h_n[0], h_n[1]], dim=-1)
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return h.masked_fill((chars == 0).unsqueeze(-1), float("-inf")).amax(1).clamp(min=-1e4)


class SequenceTagger(RnnlabModule):
    """Unit embeddings (+ a character-level word encoder) -> :class:`~rnnlab.nn.recurrent.Recurrent` -> per-step linear
    -> (optionally) a CRF. The loss ignores padding; with ``crf`` it is the sequence negative log-likelihood per unit.

    Input ``tokens [B, T, unit_features + W]`` (see :mod:`rnnlab.data.tagging`): the ``unit_features`` ids of each
    step are embedded and concatenated (a character and its two bigrams for segmentation), the rest are the unit's
    characters. ``vocab_size``, ``char_vocab_size``, ``unit_features``, ``num_classes`` and ``pad_id`` are linked
    from the DataModule by the CLI.

    Logs ``{stage}/loss``, ``{stage}/acc`` (per unit), ``{stage}/acc_oov`` (units unseen in training) and, for
    segmentation and chunking, span ``{stage}/precision|recall|f1|oov_recall`` (SIGHAN ``score`` / ``conlleval``).

    Args:
        word_dropout: during training, replace a unit's id by ``<unk>`` with this probability (teaches the
            ``<unk>`` embedding, so unseen words lean on their characters).
        crf: a CRF output layer with Viterbi decoding instead of independent per-step softmax.
        pretrained_embeddings / freeze_embeddings: initialise the unit embedding from a word2vec file (``.pt`` or
            text; e.g. character vectors from configs/tang_char2vec.yaml), aligned by unit; keep it fixed or not.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        char_vocab_size: int = 0,
        unit_features: int = 1,
        embedding_dim: int = 100,
        char_encoder: Literal["lstm", "cnn", "none"] = "lstm",
        char_embedding_dim: int = 32,
        char_hidden_size: int = 32,
        rnn: RecurrentSpec = RecurrentSpec("lstm", "torch", 128, 1, True, packed=False),
        dropout: float = 0.33,
        embedding_dropout: float = 0.33,
        word_dropout: float = 0.05,
        crf: bool = False,
        pretrained_embeddings: Optional[str] = None,
        freeze_embeddings: bool = False,
        optimizer: OptimizerCallable = adamw(2e-3),
        scheduler: Schedule = lazy_instance(OneCycle, warmup=0.1),
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
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        input_size = unit_features * embedding_dim
        self.char_encoder: Optional[CharWordEncoder] = None
        if char_encoder != "none":
            if char_vocab_size <= 0:
                raise RnnlabError(
                    f"char_encoder={char_encoder!r} needs characters from the data: set data.init_args.char_features: "
                    f"true, or model.init_args.char_encoder: none"
                )
            self.char_encoder = CharWordEncoder(
                char_vocab_size, char_embedding_dim, char_hidden_size, char_encoder, impl
            )
            input_size += self.char_encoder.output_size
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.encoder = Recurrent(
            input_size,
            hidden_size,
            cell=cell,
            impl=impl,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            packed=rnn.packed,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.output_size, num_classes)
        self.crf = CRF(num_classes) if crf else None
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX))
            setattr(
                self, f"{stage}_acc_oov", MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX)
            )
            setattr(self, f"{stage}_spans", SpanF1())
        self.scheme = "tags"

    # ------------------------------------------------------------------ model
    def features(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``tokens [B, T, K]`` -> the recurrent layer's input ``[B, T, D]``."""
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(-1)
        F_ = self.hparams.unit_features
        if tokens.shape[-1] < F_:
            raise RnnlabError(
                f"the model reads {F_} ids per step but the batch has {tokens.shape[-1]}: the data's "
                f"unit_features differ from the model's"
            )
        units = tokens[..., :F_].long()
        if self.training and self.hparams.word_dropout > 0:
            drop = (torch.rand(units.shape, device=units.device) < self.hparams.word_dropout) & (units > UNK_ID)
            units = units.masked_fill(drop, UNK_ID)
        B, T = units.shape[:2]
        parts = [self.embedding(units).reshape(B, T, -1)]
        if self.char_encoder is not None:
            chars = tokens[..., F_:].long()
            if chars.shape[-1] == 0:
                raise RnnlabError(
                    "the model has a character encoder but the data gives no characters: set "
                    "data.init_args.char_features: true"
                )
            valid = torch.arange(T, device=tokens.device).unsqueeze(0) < lengths.to(tokens.device).unsqueeze(1)
            # every step, padding zeroed afterwards: no data-dependent shapes (an ONNX graph, torch.compile), and
            # little waste: length buckets keep batches close to one length
            words = self.char_encoder(chars.flatten(0, 1)).view(B, T, -1)
            parts.append(words * valid.unsqueeze(-1).to(words.dtype))
        return self.embedding_dropout(torch.cat(parts, dim=-1))

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``tokens [B, T(, K)]``, ``lengths [B]`` -> per-step scores ``[B, T, num_classes]``."""
        outputs, _ = self.encoder(self.features(tokens, lengths), lengths)
        return self.head(self.dropout(outputs))

    @staticmethod
    def mask(lengths: Tensor, T: int) -> Tensor:
        return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)

    def decode(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """Best tags ``[B, T]`` (Viterbi with a CRF, else the per-step argmax); 0 on padding."""
        mask = self.mask(lengths.to(emissions.device), emissions.shape[1])
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        return emissions.argmax(-1).masked_fill(~mask, 0)

    def loss(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        if self.crf is None:
            return F.cross_entropy(emissions.float().flatten(0, 1), tags.flatten(), ignore_index=IGNORE_INDEX)
        mask = self.mask(lengths.to(emissions.device), emissions.shape[1])
        return -self.crf.log_likelihood(emissions, tags, mask).sum() / mask.sum()

    # --------------------------------------------------------------- Lightning
    def setup(self, stage: str) -> None:
        task = self.task
        if task.vocab is None:  # not bound to data
            return
        features = task.unit_features
        if features != self.hparams.unit_features:
            raise RnnlabError(
                f"the data gives {features} ids per step, the model expects "
                f"{self.hparams.unit_features}: let the CLI link them (do not set unit_features)"
            )
        if stage == "fit" and self.hparams.pretrained_embeddings:
            from rnnlab.embeddings import init_embedding

            self.pretrained_coverage = init_embedding(
                self.embedding, self.hparams.pretrained_embeddings, task.vocab, self.hparams.pad_id
            )
        self.scheme = task.scheme
        for stage_ in ("train", "val", "test"):
            getattr(self, f"{stage_}_spans").configure(list(task.labels), self.scheme)

    def _step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor]:
        tags, oov = batch.target, batch.flags
        emissions = self(batch.tokens, batch.lengths)
        loss = self.loss(emissions, tags, batch.lengths)
        on_step = stage == "train"
        n = int(batch.lengths.sum())
        self.log(
            f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=not on_step
        )
        if stage == "train" and self.crf is not None:  # Viterbi per training batch is costly: argmax is enough here
            preds = emissions.detach().argmax(-1)
        else:
            preds = self.decode(emissions.detach(), batch.lengths)
        acc, acc_oov = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_acc_oov")
        acc.update(preds.flatten(), tags.flatten())
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=stage != "train")
        if stage != "train":
            acc_oov.update(preds.flatten(), tags.masked_fill(oov != 1, IGNORE_INDEX).flatten())
            self.log(f"{stage}/acc_oov", acc_oov, on_step=False, on_epoch=True)
            if self.scheme in ("bmes", "bio"):
                spans = getattr(self, f"{stage}_spans")
                spans.update(preds, tags, oov.clamp(min=0))
        return loss, preds

    def _log_spans(self, stage: str) -> None:
        if self.scheme in ("bmes", "bio"):
            spans = getattr(self, f"{stage}_spans")
            self.log_dict({f"{stage}/{k}": v for k, v in spans.compute().items()}, prog_bar=stage == "val")
            spans.reset()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")[0]

    def evaluate(self, batch: Batch, stage: str) -> dict:
        _, preds = self._step(batch, stage)
        valid = batch.target != IGNORE_INDEX
        return {"preds": preds[valid], "target": batch.target[valid]}  # for the confusion-matrix callback

    def epoch_end(self, stage: str) -> None:
        self._log_spans(stage)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        return {"index": batch.index, "tags": self.decode(self(batch.tokens, batch.lengths), batch.lengths)}
