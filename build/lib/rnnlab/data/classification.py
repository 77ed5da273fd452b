"""``TextClassificationDataModule``: texts with one label each (reviews -> sentiment, names -> gender or language).

A dataset module only says how to read its splits (:meth:`read_splits`); vocabulary (on the train split only),
encoding (once, cached), truncation, class counts and ``predict`` on raw text are done here for all of them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Literal, Optional

import torch

from rnnlab.contract import Task
from rnnlab.data.base import SequenceDataModule, pack_sequences, unpack_sequences
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.text import Vocabulary
from rnnlab.errors import RnnlabError

log = logging.getLogger(__name__)

Labelled = list[tuple[str, int]]


def truncate(seq: torch.Tensor, max_length: Optional[int], keep: str) -> torch.Tensor:
    """Cut ``seq`` to ``max_length`` keeping the ``head``, the ``tail`` or ``both`` (first quarter + last 3/4)."""
    if not max_length or len(seq) <= max_length:
        return seq
    if keep == "head":
        return seq[:max_length]
    if keep == "tail":
        return seq[-max_length:]
    head = max_length // 4
    return torch.cat([seq[:head], seq[len(seq) - (max_length - head) :]])


def stratified_split(labels: list[int], fractions: list[float], seed: int) -> list[list[int]]:
    """Indices split into ``len(fractions) + 1`` parts (the last gets the rest), class by class, seeded."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    for y in sorted(by_class):
        idx = torch.tensor(by_class[y])[torch.randperm(len(by_class[y]), generator=g)].tolist()
        start = 0
        for k, frac in enumerate(fractions):
            take = round(frac * len(idx))
            parts[k] += idx[start : start + take]
            start += take
        parts[-1] += idx[start:]
    return [sorted(p) for p in parts]


def grouped_split(groups: list, labels: list[int], n_held: int, seed: int) -> tuple[list[int], list[int]]:
    """``(held, rest)`` indices: whole groups (e.g. all the reviews of one movie) are held out, in a seeded order,
    until ``n_held`` items are; a group is skipped while it would push a class past its share of ``n_held`` (so the
    held-out part keeps the class balance). No group has items on both sides."""
    by_group: dict = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    names = sorted(by_group, key=str)
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    classes = sorted(set(labels))
    share = {c: n_held * sum(1 for y in labels if y == c) / len(labels) for c in classes}
    held: list[int] = []
    count = dict.fromkeys(classes, 0)
    for k in order:
        if len(held) >= n_held:
            break
        members = by_group[names[k]]
        add = {c: sum(1 for i in members if labels[i] == c) for c in classes}
        if any(count[c] + add[c] > share[c] + 0.01 * n_held + 1 for c in classes):
            continue
        held += members
        for c in classes:
            count[c] += add[c]
    chosen = set(held)
    return sorted(held), [i for i in range(len(groups)) if i not in chosen]


class TextClassificationDataModule(SequenceDataModule):
    """Base for one-label-per-text datasets. Subclasses implement :meth:`read_splits` (and may override
    :meth:`read_unlabelled`); splits ``train``, ``val`` and ``test`` are expected, others are kept as extra splits.

    Args:
        level: ``word`` or ``char`` tokens.
        max_vocab: vocabulary size including ``<pad>`` and ``<unk>`` (most frequent training tokens); None: all.
        min_freq: drop tokens seen fewer times in the training split.
        max_length: truncate to this many tokens (None: keep all); ``predict`` truncates too, with a warning.
        truncation: which part of a long text to keep: ``head``, ``tail`` or ``both``.
        lowercase: lower-case before tokenising.
        train_on_val: also train on the validation split -- the final refit of a recipe whose epochs were chosen on
            it (use a fixed ``max_epochs`` and no early stopping: validation metrics are then not held out).
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule` (root, local_dir, batch_size, seed, ...).
    """

    labels: list[str] = []
    html_breaks = False  # replace <br /> by spaces (IMDB)
    unit_name: Optional[str] = None  # what predict's messages call a token (default: word or character)

    def __init__(
        self,
        level: Literal["word", "char"] = "word",
        max_vocab: Optional[int] = None,
        min_freq: int = 1,
        max_length: Optional[int] = None,
        truncation: Literal["head", "tail", "both"] = "head",
        lowercase: bool = True,
        train_on_val: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.train_on_val = train_on_val
        if train_on_val:
            log.warning(
                "train_on_val: the validation split is trained on, so its metrics are not held out (choose "
                "the epochs beforehand; no early stopping or best-checkpoint choice on them)"
            )
        if truncation not in ("head", "tail", "both"):
            raise RnnlabError(f"truncation must be 'head', 'tail' or 'both', got {truncation!r}")
        if level not in ("word", "char"):
            raise RnnlabError(f"level must be 'word' or 'char', got {level!r}")
        self.level, self.max_vocab, self.min_freq = level, max_vocab, min_freq
        self.max_length, self.truncation, self.lowercase = max_length, truncation, lowercase
        self.vocab: Optional[Vocabulary] = None
        self._class_counts: Optional[list[int]] = None

    # ------------------------------------------------------------- subclass API
    def read_splits(self) -> tuple[dict[str, Labelled], list[str]]:
        """``({"train": [(text, label index), ...], "val": [...], "test": [...]}, label names)``."""
        raise NotImplementedError

    def read_unlabelled(self) -> dict[str, list[str]]:
        """Extra unlabelled splits (e.g. IMDB's ``unsup``), encoded with the same vocabulary."""
        return {}

    def encoding_args(self) -> dict:
        return {
            "level": self.level,
            "max_vocab": self.max_vocab,
            "min_freq": self.min_freq,
            "lowercase": self.lowercase,
            "train_on_val": self.train_on_val,
        }

    # ----------------------------------------------------------------- building
    def build(self, state: Optional[dict]) -> dict:
        splits, labels = self.read_splits()
        for required in ("train", "val", "test"):
            if not splits.get(required):
                raise RnnlabError(f"{self.name}: the {required!r} split is empty; check the data and the split sizes")
        if self.train_on_val:
            splits = {**splits, "train": splits["train"] + splits["val"]}
        if state is None:
            vocab = Vocabulary.build(
                (t for t, _ in splits["train"]),
                level=self.level,
                lowercase=self.lowercase,
                html_breaks=self.html_breaks,
                max_size=self.max_vocab,
                min_freq=self.min_freq,
            )
            state = {"vocab": vocab.to_str(), "labels": list(labels)}
        else:
            vocab = Vocabulary.from_str(state["vocab"])
            if list(state["labels"]) != list(labels):
                raise RnnlabError(f"the checkpoint's labels {state['labels']} are not this dataset's {labels}")
        encoded = {}
        for split, items in splits.items():
            encoded[split] = {
                **pack_sequences(vocab.encode([t for t, _ in items])),
                "targets": torch.tensor([y for _, y in items], dtype=torch.long),
            }
        for split, texts in self.read_unlabelled().items():
            encoded[split] = pack_sequences(vocab.encode(texts))
        return {"state": state, "splits": encoded}

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["vocab"])
        self.labels = list(state["labels"])

    def make_dataset(self, split: str, data: dict) -> SequenceDataset:
        seqs = [truncate(s, self.max_length, self.truncation) for s in unpack_sequences(data)]
        keep = [i for i, s in enumerate(seqs) if len(s) > 0]  # a text with no tokens cannot be read
        targets = data.get("targets")
        if split == "train" and targets is not None:
            self._class_counts = torch.bincount(targets[keep], minlength=len(self.labels)).tolist()
        return SequenceDataset([seqs[i] for i in keep], None if targets is None else targets[keep])

    def describe_task(self) -> Task:
        return replace(
            super().describe_task(),
            class_counts=self.class_counts,
            train_examples=self._train_examples,
            collate=self.collate,
        )

    def _train_examples(self) -> tuple[list, torch.Tensor]:
        train = self.dataset("train")
        return list(train.sequences), train.targets

    @property
    def class_counts(self) -> Optional[list[int]]:
        """Training examples per class (after ``setup``), e.g. for a class-balanced loss."""
        return self._class_counts

    # ----------------------------------------------------------------- predict
    def preprocess(self, text: str) -> str:
        """What the dataset does to a raw input before tokenising (e.g. script conversion); identity here."""
        return text

    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        unit = self.unit_name or ("word" if self.level == "word" else "character")
        processed = [self.preprocess(t) for t in texts]
        for raw, text, ids in zip(texts, processed, self.vocab.encode(processed)):
            if not raw.strip():
                items.append({"input": raw, "error": "empty input: nothing to classify"})
                continue
            if not ids:
                items.append({"input": raw, "error": f"no usable {unit} in this input: nothing to classify"})
                continue
            item = {"input": raw, "tokens": truncate(torch.tensor(ids), self.max_length, self.truncation)}
            warnings = []
            unknown = [p for p, i in zip(self.vocab.split(text), ids) if i == self.vocab.unk_id]
            if len(unknown) == len(ids):
                warnings.append(f"every {unit} is unknown to the vocabulary: the prediction is a guess")
            elif unknown:
                shown = ", ".join(repr(u) for u in list(dict.fromkeys(unknown))[:5])
                warnings.append(f"unknown {unit}s read as <unk>: {shown}" + (" ..." if len(set(unknown)) > 5 else ""))
            if self.max_length and len(ids) > self.max_length:
                warnings.append(f"{len(ids)} {unit}s, truncated to {self.max_length} ({self.truncation})")
            if warnings:
                item["warning"] = "; ".join(warnings)
            items.append(item)
        return items
