"""IMDB movie reviews (Maas et al., ACL 2011): binary sentiment, 25k train / 25k test, 50k unlabelled.

Reads the official ``aclImdb_v1.tar.gz`` as it is (``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``,
``aclImdb/train/unsup/``) without extracting its 100k small files: one pass over the archive.
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Literal, Optional, Union

import torch

from rnnlab.data.base import SequenceDataModule, pack_sequences, unpack_sequences
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.sources import RemoteFile, Source, fetch, register
from rnnlab.data.text import Vocabulary
from rnnlab.errors import RnnlabError

ARCHIVE = "aclImdb_v1.tar.gz"
_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
OFFICIAL_COUNTS = {("train", "pos"): 12500, ("train", "neg"): 12500, ("test", "pos"): 12500,
                   ("test", "neg"): 12500, ("train", "unsup"): 50000}


def _count_members(path: Path) -> Counter:
    counts: Counter = Counter()
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if m := _MEMBER.match(member.name):
                    counts[(m.group(1), m.group(2))] += 1
    except (tarfile.TarError, OSError, EOFError) as err:
        raise RnnlabError(f"{path} is not a readable tar.gz archive ({err}); replace it with {IMDB.files[0].url}")
    return counts


def check_archive(path: Path) -> str:
    """Structural check of an IMDB archive: official layout, labelled reviews in all four folders."""
    counts = _count_members(path)
    missing = [f"aclImdb/{s}/{c}/" for (s, c) in OFFICIAL_COUNTS if c != "unsup" and not counts[(s, c)]]
    if missing:
        raise RnnlabError(
            f"{path} does not have the official aclImdb layout: no reviews under {', '.join(missing)}. "
            f"Get the archive from {IMDB.files[0].url}"
        )
    differ = {f"{s}/{c}": counts[(s, c)] for (s, c), n in OFFICIAL_COUNTS.items() if counts[(s, c)] != n}
    summary = ", ".join(f"{s}/{c} {counts[(s, c)]}" for (s, c) in OFFICIAL_COUNTS)
    return summary + (f"; differs from the official counts in {sorted(differ)}" if differ else "; official counts")


IMDB = register(Source(
    name="imdb",
    files=(RemoteFile(ARCHIVE, "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                      "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"),),
    homepage="https://ai.stanford.edu/~amaas/data/sentiment/",
    check=check_archive,
))


def read_archive(path: Path, unsup: bool = False) -> dict[str, list[tuple[int, int, str]]]:
    """``{"train/pos": [(id, rating, text), ...], ...}`` sorted by id, in one pass over the archive."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            m = _MEMBER.match(member.name)
            if not m or (m.group(2) == "unsup" and not unsup):
                continue
            text = tar.extractfile(member).read().decode("utf-8", errors="replace")
            out.setdefault(f"{m.group(1)}/{m.group(2)}", []).append((int(m.group(3)), int(m.group(4)), text))
    for reviews in out.values():
        reviews.sort()
    return out


def truncate(seq: torch.Tensor, max_length: Optional[int], keep: str) -> torch.Tensor:
    """Cut ``seq`` to ``max_length`` keeping the ``head``, the ``tail`` or ``both`` (first quarter + last 3/4)."""
    if not max_length or len(seq) <= max_length:
        return seq
    if keep == "head":
        return seq[:max_length]
    if keep == "tail":
        return seq[-max_length:]
    head = max_length // 4
    return torch.cat([seq[:head], seq[len(seq) - (max_length - head):]])


class IMDBDataModule(SequenceDataModule):
    """IMDB sentiment: train/val split of the official train set (stratified, seeded), official test set as test.

    Args:
        val_size: reviews held out from the official train set for validation (an int, or a fraction < 1).
        max_vocab: vocabulary size including ``<pad>`` and ``<unk>`` (most frequent training words).
        min_freq: drop words seen fewer times in the training split.
        max_length: truncate reviews to this many tokens (None: keep all).
        truncation: which part of a long review to keep: ``head``, ``tail`` or ``both``.
        lowercase: lower-case before tokenising.
        unsup: also encode the 50k unlabelled reviews (``self.datasets["unsup"]``, for pre-training).
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule` (root, local_dir, batch_size, seed, ...).
    """

    name = "imdb"
    labels = ["neg", "pos"]

    def __init__(
        self,
        val_size: Union[int, float] = 2500,
        max_vocab: int = 30000,
        min_freq: int = 2,
        max_length: Optional[int] = 400,
        truncation: Literal["head", "tail", "both"] = "both",
        lowercase: bool = True,
        unsup: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if truncation not in ("head", "tail", "both"):
            raise RnnlabError(f"truncation must be 'head', 'tail' or 'both', got {truncation!r}")
        self.val_size, self.max_vocab, self.min_freq = val_size, max_vocab, min_freq
        self.max_length, self.truncation, self.lowercase, self.unsup = max_length, truncation, lowercase, unsup
        self.vocab: Optional[Vocabulary] = None

    def encoding_args(self) -> dict:
        return {"val_size": self.val_size, "max_vocab": self.max_vocab, "min_freq": self.min_freq,
                "lowercase": self.lowercase, "unsup": self.unsup}

    def _split_train(self, train: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
        """Stratified, seeded split of the official train set into (train indices, val indices)."""
        n_val = round(self.val_size * len(train)) if isinstance(self.val_size, float) else int(self.val_size)
        if not 0 <= n_val < len(train):
            raise RnnlabError(f"val_size={self.val_size} leaves no training reviews (train set has {len(train)})")
        g = torch.Generator().manual_seed(self.seed)
        val: list[int] = []
        labels = torch.tensor([y for _, y in train])
        for c in range(len(self.labels)):
            idx = torch.nonzero(labels == c).squeeze(1)
            take = round(n_val * len(idx) / len(train))
            val += idx[torch.randperm(len(idx), generator=g)[:take]].tolist()
        val_set = set(val)
        return [i for i in range(len(train)) if i not in val_set], sorted(val)

    def build(self, state: Optional[dict]) -> dict:
        path = fetch(self.name, self.root, self.local_dir)[ARCHIVE]
        raw = read_archive(path, unsup=self.unsup)

        def labelled(split: str) -> list[tuple[str, int]]:
            return [(t, c) for c, lab in enumerate(self.labels) for _, _, t in raw.get(f"{split}/{lab}", [])]

        official_train = labelled("train")
        train_idx, val_idx = self._split_train(official_train)
        splits = {"train": [official_train[i] for i in train_idx], "val": [official_train[i] for i in val_idx],
                  "test": labelled("test")}
        if state is None:
            vocab = Vocabulary.build((t for t, _ in splits["train"]), level="word", lowercase=self.lowercase,
                                     html_breaks=True, max_size=self.max_vocab, min_freq=self.min_freq)
            state = {"vocab": vocab.to_str(), "labels": list(self.labels)}
        else:
            vocab = Vocabulary.from_str(state["vocab"])
        encoded = {}
        for split, items in splits.items():
            encoded[split] = {**pack_sequences(vocab.encode([t for t, _ in items])),
                              "targets": torch.tensor([y for _, y in items], dtype=torch.long)}
        if self.unsup:
            encoded["unsup"] = pack_sequences(vocab.encode([t for _, _, t in raw.get("train/unsup", [])]))
        return {"state": state, "splits": encoded}

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["vocab"])
        self.labels = list(state["labels"])

    def make_dataset(self, split: str, data: dict) -> SequenceDataset:
        seqs = [truncate(s, self.max_length, self.truncation) for s in unpack_sequences(data)]
        keep = [i for i, s in enumerate(seqs) if len(s) > 0]  # a review with no tokens cannot be read
        targets = data.get("targets")
        return SequenceDataset([seqs[i] for i in keep], None if targets is None else targets[keep])

    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        for text, ids in zip(texts, self.vocab.encode(texts)):
            if not text.strip():
                items.append({"input": text, "error": "empty input: nothing to classify"})
                continue
            if not ids:
                items.append({"input": text, "error": "no words or punctuation in this input: nothing to classify"})
                continue
            item = {"input": text, "tokens": truncate(torch.tensor(ids), self.max_length, self.truncation)}
            unknown = sum(i == self.vocab.unk_id for i in ids)
            if unknown == len(ids):
                item["warning"] = "every word is unknown to the vocabulary: the prediction is a guess"
            items.append(item)
        return items
