"""Chinese word segmentation as character tagging (``B``/``M``/``E``/``S``): Sinica Treebank and SIGHAN 2005.

* ``sinica`` (NLTK's ``sinica_treebank.zip`` -> ``sinica_treebank/raw``): 10,000 segmented sentences of traditional
  Chinese, ``#n:n.[id] word word ...``; the treebank's markers are removed (``‧的``/``得‧`` empty elements,
  ``_11``/``[+]``-style prefixes), and a seeded sentence-level train/val/test split is drawn.
* SIGHAN 2005 bakeoff (``icwb2-data.zip``), corpora ``pku``, ``msr``, ``cityu``, ``as``:
  ``training/<c>_training.utf8`` (words separated by spaces), ``gold/<c>_test_gold.utf8`` (the test set, segmented),
  ``gold/<c>_training_words.utf8`` (the word list the official ``score`` script uses for OOV recall).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Literal, Sequence

from rnnlab.data.base import seeded_split
from rnnlab.data.names import _Converter
from rnnlab.data.sources import RemoteFile, Source, fetch, register, zip_names
from rnnlab.data.tagging import Tagged, TaggingDataModule, bmes_to_words, words_to_bmes
from rnnlab.errors import RnnlabError, require

SIGHAN_URL = "http://sighan.cs.uchicago.edu/bakeoff2005/data/icwb2-data.zip"
SIGHAN_CORPORA = ("pku", "msr", "cityu", "as")


def _check_icwb2(path: Path) -> str:
    names = _listing(path)
    found = [c for c in SIGHAN_CORPORA if f"gold/{c}_test_gold.utf8" in names]
    if not found:
        raise RnnlabError(f"{path} holds no gold/<corpus>_test_gold.utf8; replace it with {SIGHAN_URL}")
    return f"gold files for {', '.join(found)}"


def _check_sinica(path: Path) -> str:
    if "sinica_treebank/raw" not in _listing(path):
        raise RnnlabError(f"{path} lacks sinica_treebank/raw; replace it with NLTK's sinica_treebank.zip")
    return "raw present"


register(
    Source(
        "icwb2",
        files=(RemoteFile("icwb2-data.zip", SIGHAN_URL, extracted="icwb2-data"),),
        homepage="http://sighan.cs.uchicago.edu/bakeoff2005/",
        check=_check_icwb2,
    )
)
register(
    Source(
        "sinica_treebank",
        files=(
            RemoteFile(
                "sinica_treebank.zip",
                "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/sinica_treebank.zip",
                "395958a28f06d92ce1de0f0cf1bb17dc4a5cc882d27487447252ad615641e9ba",
            ),
        ),
        homepage="http://rocling.iis.sinica.edu.tw/CKIP/engversion/treebank.htm",
        check=_check_sinica,
        license="CC BY-NC-SA 2.5",
    )
)


def _listing(path: Path) -> set[str]:
    """Member names of a zip (without the top folder ``icwb2-data/``) or of an extracted folder."""
    if path.is_dir():
        return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
    try:
        with zipfile.ZipFile(path) as z:
            return {n.split("/", 1)[1] if n.startswith("icwb2-data/") else n for n in zip_names(z, path)}
    except zipfile.BadZipFile:
        raise RnnlabError(f"{path} is not a zip archive; replace it with the official file") from None


def read_member(path: Path, member: str) -> str | None:
    """A member's UTF-8 text from a zip (under ``icwb2-data/`` or not) or an extracted folder; None if absent.
    Shared by the segmentation loaders and the benchmarks that read the SIGHAN and Sinica archives."""
    if path.is_dir():
        f = path / member
        return f.read_bytes().decode("utf-8-sig") if f.is_file() else None
    with zipfile.ZipFile(path) as z:
        for name in (f"icwb2-data/{member}", member):
            if name in z.namelist():
                return z.read(name).decode("utf-8-sig")
    return None


def training_words_member(corpus: str) -> str:
    """The official word list of a SIGHAN corpus's training set (the ``score`` script's OOV reference)."""
    return f"gold/{corpus}_training_words.utf8"


def read_segmented(text: str) -> list[list[str]]:
    """SIGHAN format: one sentence a line, words separated by (ASCII or full-width) spaces; blank lines skipped."""
    return [line.split() for line in text.splitlines() if line.split()]


_PREFIX = re.compile(r"^(?:_\d+|\[[^\]\s]*\]|\[\})?:")


def read_sinica_raw(text: str) -> list[list[str]]:
    """``sinica_treebank/raw`` -> sentences of words, without the treebank's markers."""
    sentences = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        head, _, rest = line.partition(" ")
        if not head.startswith("#"):
            raise RnnlabError(f"sinica_treebank/raw, line {n}: expected '#n:n.[id] words...', found {line[:40]!r}")
        words = []
        for w in rest.split():
            w = _PREFIX.sub("", w)
            if not w or "‧" in w or re.fullmatch(r"_\d+", w):
                continue
            words.append(w)
        if words:
            sentences.append(words)
    return sentences


class ChineseSegmentationDataModule(TaggingDataModule):
    """Chinese word segmentation: each character gets ``B``/``M``/``E``/``S``; ``predict`` splits raw text into words
    (``我爱北京天安门`` -> ``我 爱 北京 天安门``).

    Args:
        corpus: ``sinica`` (the real-data benchmark here) or a SIGHAN 2005 corpus: ``pku``, ``msr``, ``cityu``, ``as``.
        bigrams: give each character its left and right character bigrams too (3 ids per character).
        val_fraction: share of the training sentences held out for validation.
        test_fraction: ``sinica`` only: share of the sentences held out for testing (SIGHAN has its own test set).
        script: read every character as ``traditional`` or ``simplified`` (OpenCC, character by character, so the
            output keeps the input's characters): a model trained on traditional Sinica then segments simplified
            input. ``as_is``: no conversion.
        lexicon: word lists whose matches become one more feature per character (which lexicon words of 2 to
            ``lexicon_max_len`` characters begin or end at it, or run through it): ``pku`` / ``msr`` (the SIGHAN 2005
            training word lists, ``gold/<c>_training_words.utf8``, converted to ``script``) or paths of UTF-8 files,
            one word a line.
        **kwargs: see :class:`~rnnlab.data.tagging.TaggingDataModule` (min_freq, normalize, ...).
    """

    scheme = "bmes"
    unit_name = "character"
    predict_examples = ("我們住在同一條巷子", "我爱北京天安门")

    def __init__(
        self,
        corpus: Literal["sinica", "pku", "msr", "cityu", "as"] = "sinica",
        bigrams: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        script: Literal["as_is", "traditional", "simplified"] = "as_is",
        lexicon: Sequence[str] = (),
        lexicon_max_len: int = 4,
        **kwargs,
    ) -> None:
        if corpus not in ("sinica", *SIGHAN_CORPORA):
            raise RnnlabError(f"corpus must be 'sinica' or one of {SIGHAN_CORPORA}, got {corpus!r}")
        if script not in ("as_is", "traditional", "simplified"):
            raise RnnlabError(f"script must be 'as_is', 'traditional' or 'simplified', got {script!r}")
        self.corpus, self.bigrams, self.script = corpus, bigrams, script
        self.lexicon, self.lexicon_max_len = list(lexicon), lexicon_max_len
        self._lexicon_words: set[str] | None = None
        self._convert = _Converter(script)
        self._converted: dict[str, str] = {}
        super().__init__(**kwargs)
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < frac < 0.5:
                raise RnnlabError(f"{name} must be between 0 and 0.5, got {frac}")
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.name = "sinica_treebank" if corpus == "sinica" else "icwb2"
        self._training_words: set[str] | None = None

    def encoding_args(self) -> dict:
        return {
            **super().encoding_args(),
            "corpus": self.corpus,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "script": self.script,
            "bigrams": self.bigrams,
            "lexicon": [[n, Path(n).stat().st_mtime] if Path(n).is_file() else n for n in self.lexicon],
            "lexicon_max_len": self.lexicon_max_len,
        }  # an edited word-list file re-encodes the data

    def lexicon_words(self) -> set[str]:
        """The words of ``lexicon`` (read once), in the corpus's script."""
        if self._lexicon_words is None:
            words: set[str] = set()
            for name in self.lexicon:
                if name in SIGHAN_CORPORA:
                    path = fetch("icwb2", self.root, self.local_dir)["icwb2-data.zip"]
                    text = read_member(path, training_words_member(name))
                    if text is None:
                        raise RnnlabError(f"{path} has no {training_words_member(name)}; replace it with {SIGHAN_URL}")
                elif Path(name).is_file():
                    text = Path(name).read_text(encoding="utf-8-sig")
                else:
                    raise RnnlabError(f"lexicon {name!r} is neither one of {SIGHAN_CORPORA} nor a file")
                words.update(text.split())
            if self.script != "as_is":  # Taiwan's character forms (裡, 著) for traditional: Sinica's, and CKIP's
                opencc = require("opencc", "zh", "converting the lexicon between Chinese scripts")
                cc = opencc.OpenCC("s2tw" if self.script == "traditional" else "t2s")
                words = {cc.convert(w) for w in words}
            self._lexicon_words = {w for w in words if 2 <= len(w) <= self.lexicon_max_len}
        return self._lexicon_words

    def lexicon_key(self, units: Sequence[str], i: int) -> str:
        """``lex:`` + which lexicon words begin (``B<n>``) or end (``E<n>``) at unit ``i``, or run through it (``M``)."""
        words, flags = self.lexicon_words(), []
        for n in range(2, self.lexicon_max_len + 1):
            if "".join(units[i : i + n]) in words and i + n <= len(units):
                flags.append(f"B{n}")
            if i - n + 1 >= 0 and "".join(units[i - n + 1 : i + 1]) in words:
                flags.append(f"E{n}")
        if any(
            "".join(units[j : j + n]) in words
            for n in range(3, self.lexicon_max_len + 1)
            for j in range(max(0, i - n + 2), i)
            if j + n <= len(units) and j + n - 1 > i
        ):
            flags.append("M")
        return "lex:" + ("".join(flags) or "-")

    def read_words(self) -> dict[str, list[list[str]]]:
        """``{split: sentences as word lists}``."""
        if self.corpus == "sinica":
            path = fetch("sinica_treebank", self.root, self.local_dir)["sinica_treebank.zip"]
            with zipfile.ZipFile(path) as z:
                sentences = read_sinica_raw(z.read("sinica_treebank/raw").decode("utf-8"))
            test, val, train = seeded_split(sentences, [self.test_fraction, self.val_fraction], self.seed)
            return {"train": train, "val": val, "test": test}
        path = fetch("icwb2", self.root, self.local_dir)["icwb2-data.zip"]
        member = f"training/{self.corpus}_training.utf8"
        train_text = read_member(path, member)
        if train_text is None:
            raise RnnlabError(
                f"{path} has no {member}: this copy of the SIGHAN 2005 data holds only the test and gold files. "
                f"Place the full icwb2-data.zip ({SIGHAN_URL}) there, or segment with --data.init_args.corpus sinica"
            )
        gold = read_member(path, f"gold/{self.corpus}_test_gold.utf8")
        if gold is None:
            raise RnnlabError(f"{path} has no gold/{self.corpus}_test_gold.utf8; replace it with {SIGHAN_URL}")
        words = read_member(path, training_words_member(self.corpus))
        self._training_words = set(words.split()) if words else None
        val, train = seeded_split(read_segmented(train_text), [self.val_fraction], self.seed)
        return {"train": train, "val": val, "test": read_segmented(gold)}

    def build(self, state: dict | None) -> dict:
        payload = super().build(state)
        if self.lexicon:  # saved with the vocabulary: predict from a checkpoint needs no word-list files
            payload["state"]["lexicon"] = sorted(self.lexicon_words())
        return payload

    def on_state(self, state: dict) -> None:
        super().on_state(state)
        if state.get("lexicon") is not None:
            self._lexicon_words = set(state["lexicon"])

    def read_splits(self) -> dict[str, Tagged]:
        return {split: [words_to_bmes(ws) for ws in sentences] for split, sentences in self.read_words().items()}

    # --------------------------------------------------------------- hooks
    def _char(self, c: str) -> str:
        if self.script == "as_is":
            return c
        if c not in self._converted:
            out = self._convert(c)
            self._converted[c] = out if len(out) == 1 else c
        return self._converted[c]

    def unit_keys(self, units: Sequence[str]) -> list[list[str]]:
        units = [self._char(c) for c in units]
        if not self.bigrams:
            keys = [[c] for c in units]
        else:
            padded = ["<s>", *units, "</s>"]
            keys = [[c, padded[i] + c, c + padded[i + 2]] for i, c in enumerate(units)]
        if self.lexicon:
            for i, k in enumerate(keys):
                k.append(self.lexicon_key(units, i))
        return keys

    @property
    def unit_features(self) -> int:  # counted without reading the lexicon
        return 1 + 2 * self.bigrams + bool(self.lexicon)

    def known_words(self, train: Tagged) -> set[str]:
        if self._training_words is not None:  # the official word list, as the SIGHAN score script uses
            return self._training_words
        return {w for chars, tags in train for w in bmes_to_words(chars, tags)}

    def oov_flags(self, units: Sequence[str], tags: Sequence[str], known: set[str]) -> list[int]:
        return [int(w not in known) for w in bmes_to_words(units, tags) for _ in w]

    def split_input(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]

    def render(self, units: Sequence[str], tags: Sequence[str]) -> str:
        return " ".join(bmes_to_words(units, tags))
