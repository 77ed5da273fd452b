"""CoNLL-2000 (WSJ sections 15-18 train, 20 test): part-of-speech tags, or chunks, one per word.

Files: ``word POS chunk`` per line, a blank line between sentences. Two editions, same text:

* ``official``: ``train.txt.gz`` and ``test.txt.gz`` from www.clips.uantwerpen.be/conll2000/chunking/;
* ``nltk``: NLTK's ``conll2000.zip`` -> ``conll2000/train.txt``, ``conll2000/test.txt`` (the copy in shared/data).
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Literal

from rnnlab.data.base import seeded_split
from rnnlab.data.sources import RemoteFile, Source, fetch, register, zip_names
from rnnlab.data.tagging import Tagged, TaggingDataModule, ptb_tokenize
from rnnlab.errors import RnnlabError

CONLL_URL = "https://www.clips.uantwerpen.be/conll2000/chunking/"


def parse_conll(text: str, where: str) -> list[tuple[list[str], list[str], list[str]]]:
    """CoNLL-2000 text -> ``[(words, pos tags, chunk tags)]``; a malformed line is an error naming it."""
    sentences, words, pos, chunks = [], [], [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if words:
                sentences.append((words, pos, chunks))
                words, pos, chunks = [], [], []
            continue
        cols = line.split()
        if len(cols) != 3:
            raise RnnlabError(f"{where}, line {n}: expected 'word POS chunk', found {line!r}")
        words.append(cols[0])
        pos.append(cols[1])
        chunks.append(cols[2])
    if words:
        sentences.append((words, pos, chunks))
    return sentences


def _check_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(zip_names(z, path))
    except zipfile.BadZipFile:
        raise RnnlabError(f"{path} is not a zip archive; replace it with NLTK's conll2000.zip") from None
    missing = {"conll2000/train.txt", "conll2000/test.txt"} - names
    if missing:
        raise RnnlabError(f"{path} lacks {sorted(missing)}; replace it with NLTK's conll2000.zip")
    return "train.txt and test.txt present"


def _check_gz(path: Path) -> str:
    try:
        with gzip.open(path, "rt", encoding="latin-1") as f:
            head = [next(f) for _ in range(3)]
    except (OSError, EOFError, StopIteration):
        raise RnnlabError(
            f"{path} is not a gzip file of CoNLL-2000 lines; download it again from {CONLL_URL}"
        ) from None
    if len(head[0].split()) != 3:
        raise RnnlabError(f"{path}: the first line is not 'word POS chunk'; download it again from {CONLL_URL}")
    return "word POS chunk lines"


register(
    Source(
        "conll2000",
        files=(
            RemoteFile("train.txt.gz", CONLL_URL + "train.txt.gz"),
            RemoteFile("test.txt.gz", CONLL_URL + "test.txt.gz"),
        ),
        homepage=CONLL_URL,
        check=_check_gz,
    )
)
register(
    Source(
        "conll2000_nltk",
        folder="conll2000",
        files=(
            RemoteFile(
                "conll2000.zip",
                "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/conll2000.zip",
                "01e65164f268366e7caa0db92332a1955d081908c87016e2c7640c3c5279b7cd",
            ),
        ),
        homepage=CONLL_URL,
        check=_check_zip,
    )
)


class CoNLL2000DataModule(TaggingDataModule):
    """CoNLL-2000 tagging: ``task="pos"`` (45 Penn Treebank tags) or ``"chunk"`` (``B-NP``/``I-NP``/... chunks).

    The official split: train = WSJ 15-18 (8,936 sentences) minus a seeded ``val_fraction`` for validation,
    test = WSJ 20 (2,012). ``predict`` takes raw English and tokenises it the Penn Treebank way (``don't`` ->
    ``do n't``), or, with ``pretokenized``, splits on spaces only.

    Args:
        task: ``pos`` or ``chunk``.
        edition: ``nltk`` (``conll2000.zip``) or ``official`` (``train.txt.gz``/``test.txt.gz``).
        val_fraction: share of the training sentences held out for validation.
        pretokenized: ``predict`` input is already tokenised (split on whitespace only).
        **kwargs: see :class:`~rnnlab.data.tagging.TaggingDataModule` (char_features, lowercase, ...).
    """

    name = "conll2000"
    predict_examples = ("The market rose 3 % in 1989 .",)

    def __init__(
        self,
        task: Literal["pos", "chunk"] = "pos",
        edition: Literal["nltk", "official"] = "nltk",
        val_fraction: float = 0.05,
        pretokenized: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if task not in ("pos", "chunk"):
            raise RnnlabError(f"task must be 'pos' or 'chunk', got {task!r}")
        if edition not in ("nltk", "official"):
            raise RnnlabError(f"edition must be 'nltk' or 'official', got {edition!r}")
        if not 0 < val_fraction < 1:
            raise RnnlabError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        self.task, self.edition, self.val_fraction, self.pretokenized = task, edition, val_fraction, pretokenized
        self.scheme = "bio" if task == "chunk" else "tags"

    def encoding_args(self) -> dict:
        return {**super().encoding_args(), "task": self.task, "val_fraction": self.val_fraction}

    def read_raw(self) -> dict[str, str]:
        if self.edition == "nltk":
            path = fetch("conll2000_nltk", self.root, self.local_dir)["conll2000.zip"]
            with zipfile.ZipFile(path) as z:
                return {s: z.read(f"conll2000/{s}.txt").decode("latin-1") for s in ("train", "test")}
        paths = fetch("conll2000", self.root, self.local_dir)
        return {s: gzip.decompress(paths[f"{s}.txt.gz"].read_bytes()).decode("latin-1") for s in ("train", "test")}

    def read_splits(self) -> dict[str, Tagged]:
        column = 1 if self.task == "pos" else 2
        raw = self.read_raw()
        parsed = {
            s: [(w, cols[column - 1]) for w, *cols in parse_conll(text, f"conll2000 {s}.txt")]
            for s, text in raw.items()
        }
        val, train = seeded_split(parsed["train"], [self.val_fraction], self.seed)
        return {"train": train, "val": val, "test": parsed["test"]}

    def split_input(self, text: str) -> list[str]:
        return text.split() if self.pretokenized else ptb_tokenize(text)
