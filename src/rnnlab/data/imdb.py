"""IMDB movie reviews (Maas et al., ACL 2011): binary sentiment, 25k train / 25k test, 50k unlabelled.

Reads the official ``aclImdb_v1.tar.gz`` as it is (``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``,
``aclImdb/train/unsup/``) without extracting its 100k small files: one pass over the archive.
"""

from __future__ import annotations

import logging
import re
import tarfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional, Union

import torch

from rnnlab.contract import GenerationRow, Task
from rnnlab.data.charlm import CharCorpusDataModule
from rnnlab.data.classification import Labelled, TextClassificationDataModule, grouped_split, stratified_split, truncate
from rnnlab.data.sources import RemoteFile, Source, fetch, register, tar_files
from rnnlab.data.text import EOS, Vocabulary
from rnnlab.errors import RnnlabError

__all__ = ["IMDBDataModule", "IMDBLanguageModelDataModule", "read_archive", "check_archive", "truncate"]
log = logging.getLogger(__name__)

ARCHIVE = "aclImdb_v1.tar.gz"
_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
OFFICIAL_COUNTS = {
    ("train", "pos"): 12500,
    ("train", "neg"): 12500,
    ("test", "pos"): 12500,
    ("test", "neg"): 12500,
    ("train", "unsup"): 50000,
}


def _count_members(path: Path) -> Counter:
    counts: Counter = Counter()
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar_files(tar, path):
                if m := _MEMBER.match(member.name):
                    counts[(m.group(1), m.group(2))] += 1
    except (tarfile.TarError, OSError, EOFError) as err:
        raise RnnlabError(
            f"{path} is not a readable tar.gz archive ({err}); replace it with {IMDB.files[0].url}"
        ) from None
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


IMDB = register(
    Source(
        name="imdb",
        files=(
            RemoteFile(
                ARCHIVE,
                "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
            ),
        ),
        homepage="https://ai.stanford.edu/~amaas/data/sentiment/",
        check=check_archive,
    )
)


_URLS = re.compile(r"^aclImdb/(train|test)/urls_(pos|neg|unsup)\.txt$")
_MOVIE = re.compile(r"title/(tt\d+)")


def read_archive(path: Path, unsup: bool = False) -> dict[str, list[tuple[int, int, str]]]:
    """``{"train/pos": [(id, rating, text), ...], ...}`` sorted by id, in one pass over the archive. The movie of
    each review comes as ``{"movies/train/pos": [movie of id 0, movie of id 1, ...]}`` (from ``urls_*.txt``: line
    ``i`` is the IMDb page of review ``i``'s movie)."""
    out: dict = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar_files(tar, path):
            if u := _URLS.match(member.name):
                lines = tar.extractfile(member).read().decode("utf-8", errors="replace").splitlines()
                out[f"movies/{u.group(1)}/{u.group(2)}"] = [
                    (m.group(1) if (m := _MOVIE.search(line)) else line) for line in lines
                ]
                continue
            m = _MEMBER.match(member.name)
            if not m or (m.group(2) == "unsup" and not unsup):
                continue
            text = tar.extractfile(member).read().decode("utf-8", errors="replace")
            out.setdefault(f"{m.group(1)}/{m.group(2)}", []).append((int(m.group(3)), int(m.group(4)), text))
    for key, reviews in out.items():
        if not key.startswith("movies/"):
            reviews.sort()
    return out


def review_movies(raw: dict, split: str, label: str) -> list | None:
    """The movie of every review of ``split/label`` in ``raw``'s order, or None if ``urls_<label>.txt`` is missing or
    does not cover every review id."""
    movies = raw.get(f"movies/{split}/{label}")
    reviews = raw.get(f"{split}/{label}", [])
    if movies is None or any(i >= len(movies) for i, _, _ in reviews):
        return None
    return [movies[i] for i, _, _ in reviews]


class IMDBDataModule(TextClassificationDataModule):
    """IMDB sentiment: train/val split of the official train set, official test set as test.

    The official train and test sets come from disjoint movies, so validation does too: whole movies (by
    ``urls_*.txt``) are held out, in a seeded order, keeping the classes balanced (:func:`grouped_split`). A random
    split would put reviews of one movie on both sides and make validation easier than test.

    Args:
        val_size: reviews held out from the official train set for validation (an int, or a fraction < 1).
        val_split: ``movie`` (no movie on both sides; the default) or ``random`` (stratified by class, seeded: the
            split before 2026-12, kept to reproduce earlier figures).
        max_vocab: vocabulary size including ``<pad>`` and ``<unk>`` (most frequent training words).
        min_freq: drop words seen fewer times in the training split.
        max_length: truncate reviews to this many tokens (None: keep all).
        truncation: which part of a long review to keep: ``head``, ``tail`` or ``both``.
        lowercase: lower-case before tokenising.
        unsup: also encode the 50k unlabelled reviews (``self.datasets["unsup"]``, for pre-training).
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule` (root, local_dir, batch_size, seed, ...).
    """

    name = "imdb"
    predict_examples = ("A wonderful film. I loved every minute of it.", "Boring, far too long, a waste of time.")
    labels = ["neg", "pos"]
    html_breaks = True

    def __init__(
        self,
        val_size: Union[int, float] = 2500,
        max_vocab: Optional[int] = 30000,
        min_freq: int = 2,
        max_length: Optional[int] = 400,
        truncation: Literal["head", "tail", "both"] = "both",
        lowercase: bool = True,
        unsup: bool = False,
        val_split: Literal["movie", "random"] = "movie",
        **kwargs,
    ) -> None:
        super().__init__(
            level="word",
            max_vocab=max_vocab,
            min_freq=min_freq,
            max_length=max_length,
            truncation=truncation,
            lowercase=lowercase,
            **kwargs,
        )
        if val_split not in ("movie", "random"):
            raise RnnlabError(f"val_split must be 'movie' or 'random', got {val_split!r}")
        self.val_size, self.unsup, self.val_split = val_size, unsup, val_split
        self._raw: Optional[dict] = None

    def encoding_args(self) -> dict:
        return {**super().encoding_args(), "val_size": self.val_size, "unsup": self.unsup, "val_split": self.val_split}

    def _read(self) -> dict:
        if self._raw is None:
            self._raw = read_archive(fetch(self.name, self.root, self.local_dir)[ARCHIVE], unsup=self.unsup)
        return self._raw

    def read_splits(self) -> tuple[dict[str, Labelled], list[str]]:
        raw = self._read()

        def labelled(split: str) -> Labelled:
            return [(t, c) for c, lab in enumerate(self.labels) for _, _, t in raw.get(f"{split}/{lab}", [])]

        official_train = labelled("train")
        n = len(official_train)
        n_val = round(self.val_size * n) if isinstance(self.val_size, float) else int(self.val_size)
        if not 0 < n_val < n:
            raise RnnlabError(
                f"val_size={self.val_size} must leave reviews for both training and validation (the train set has {n})"
            )
        labels = [y for _, y in official_train]
        movies = [review_movies(raw, "train", lab) for lab in self.labels]
        if self.val_split == "movie" and all(m is not None for m in movies):
            val_idx, train_idx = grouped_split([m for part in movies for m in part], labels, n_val, self.seed)
        else:
            if self.val_split == "movie":
                log.warning(
                    "imdb: urls_*.txt missing or short in the archive, so validation is a random split: it "
                    "shares movies with training and reads easier than test"
                )
            val_idx, train_idx = stratified_split(labels, [n_val / n], self.seed)
        splits = {
            "train": [official_train[i] for i in train_idx],
            "val": [official_train[i] for i in val_idx],
            "test": labelled("test"),
        }
        return splits, list(self.labels)

    def read_unlabelled(self) -> dict[str, list[str]]:
        if not self.unsup:
            return {}
        return {"unsup": [t for _, _, t in self._read().get("train/unsup", [])]}

    def build(self, state):
        try:
            return super().build(state)
        finally:
            self._raw = None  # the raw reviews are not needed once encoded


class IMDBLanguageModelDataModule(CharCorpusDataModule):
    """Word-level language modelling on IMDB's own text, to pre-train a classifier's encoder
    (``configs/imdb_lm_pretrain.yaml``; Dai & Le 2015, Howard & Ruder 2018).

    Training text: the official training reviews outside the classifier's validation split, and the 50,000
    unlabelled reviews, joined into one stream with ``<eos>`` after each review. Validation: the reviews that
    :class:`IMDBDataModule` holds out for the classifier's validation (same ``val_size``, ``val_split`` and
    ``seed``), so the classifier's validation stays unseen by its pre-training too. The official test reviews are
    never read; ``test`` scores the validation reviews again. The vocabulary (``max_vocab`` most frequent words seen
    ``min_freq`` times, the classifier's tokeniser) comes from the training text.

    Windows of ``seq_len`` words; ``stateful: false`` (the default, and what a bidirectional model needs) shuffles
    them and reads each from an empty state, as the classifier will read a review. ``predict`` continues prompts.
    """

    name = "imdb"
    predict_examples = ("this movie is one of the",)

    def __init__(
        self,
        seq_len: int = 100,
        val_size: Union[int, float] = 2500,
        val_split: Literal["movie", "random"] = "movie",
        max_vocab: Optional[int] = 30000,
        min_freq: int = 2,
        lowercase: bool = True,
        stateful: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(seq_len=seq_len, stateful=stateful, **kwargs)
        self.val_size, self.val_split = val_size, val_split
        self.max_vocab, self.min_freq, self.lowercase = max_vocab, min_freq, lowercase
        self.eos_id: Optional[int] = None

    def encoding_args(self) -> dict:
        return {
            "kind": "language_model",
            "val_size": self.val_size,
            "val_split": self.val_split,
            "max_vocab": self.max_vocab,
            "min_freq": self.min_freq,
            "lowercase": self.lowercase,
        }

    def build(self, state: Optional[dict]) -> dict:
        reviews = IMDBDataModule(
            val_size=self.val_size,
            val_split=self.val_split,
            unsup=True,
            root=str(self.root),
            local_dir=self.local_dir,
            seed=self.seed,
        )
        splits, _ = reviews.read_splits()
        train = [t for t, _ in splits["train"]] + reviews.read_unlabelled()["unsup"]
        val = [t for t, _ in splits["val"]]
        if state is None:
            vocab = Vocabulary.build(
                train,
                level="word",
                lowercase=self.lowercase,
                html_breaks=True,
                max_size=self.max_vocab,
                min_freq=self.min_freq,
                extra_specials=(EOS,),
            )
            state = {"vocab": vocab.to_str(), "labels": []}
        vocab = Vocabulary.from_str(state["vocab"])
        eos = vocab.token_to_id(EOS)
        if eos is None:
            raise RnnlabError("this vocabulary has no <eos>: it was not built for an IMDB language model")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed)).tolist()

        def stream(texts: list[str]) -> torch.Tensor:
            return torch.tensor([i for ids in vocab.encode(texts) for i in (*ids, eos)], dtype=torch.int32)

        val_stream = stream(val)
        return {
            "state": state,
            "splits": {"train": stream([train[i] for i in order]), "val": val_stream, "test": val_stream},
        }

    def on_state(self, state: dict) -> None:
        super().on_state(state)
        self.eos_id = self.vocab.token_to_id(EOS)

    def describe_task(self) -> Task:
        return replace(super().describe_task(), eos_id=self.eos_id)

    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        for raw in texts:
            ids = self.vocab.encode([raw])[0] if raw.strip() else []
            if not ids:
                items.append({"input": raw, "error": "empty prompt: give at least one word to start from"})
                continue
            item = {"input": raw, "tokens": torch.tensor(ids), "prompt": raw}
            unknown = [w for w, i in zip(self.vocab.split(raw), ids) if i == self.vocab.unk_id]
            if unknown:
                item["warning"] = f"words not in the vocabulary, read as <unk>: {', '.join(map(repr, unknown[:5]))}"
            items.append(item)
        return items

    prediction_row = GenerationRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        ids = [i for i in output["generated"].tolist() if i >= 0]
        return {"output": " ".join([item["prompt"].strip(), *self.vocab.decode(ids)])}

    def default_prompts(self) -> list[str]:
        return ["this movie"]
