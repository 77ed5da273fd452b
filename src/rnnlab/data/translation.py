"""``TranslationDataModule``: aligned sentence pairs for encoder-decoder models.

Three real sources behind one interface (``source``):

* ``multi30k`` -- Multi30k task 1 (official github multi30k/dataset): ``data/task1/raw/<split>.<lang>.gz``, one
  sentence per line, aligned across ``en``/``de``/``fr``; the official train / val / test splits (``test_set``:
  ``test_2016_flickr``, ``test_2017_flickr`` or ``test_2018_flickr``); any source/target pair;
* ``cmn_eng`` -- Tatoeba Chinese-English (manythings.org ``cmn.txt``: English TAB Chinese TAB attribution), a seeded
  sentence-pair split; ``en`` and ``zh`` in either direction;
* ``eng_fra`` -- the PyTorch tutorial's ``data/eng-fra.txt`` (English TAB French, in ``data.zip``), with the
  tutorial's normalisation and filter (at most 10 words, "i am / he is ..." prefixes) as ``tutorial_filter``.

Each side gets its own vocabulary trained on the training split only (Hugging Face ``tokenizers``; ``word``,
``char`` or ``bpe`` units, ``<pad> <unk> <bos> <eos>`` = ids 0-3), saved in every checkpoint. A sample is the
source ids (``tokens``) and ``<bos> target <eos>`` (``target``; the decoder reads ``target[:-1]`` and predicts
``target[1:]``). ``references(split)`` gives the target sentences as the tokeniser normalises them (NFKC, lower case
when asked) before any vocabulary lookup, so BLEU compares detokenised output with text that no ``<unk>`` touched.
"""

from __future__ import annotations

import gzip
import io
import re
import unicodedata
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch

from rnnlab.contract import Task, TranslationRow
from rnnlab.data.base import SequenceDataModule, seeded_split
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.sources import RemoteFile, Source, fetch, register, zip_names
from rnnlab.data.text import BOS, EOS, Vocabulary
from rnnlab.errors import RnnlabError

Level = Literal["word", "char", "bpe"]
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2018_flickr")
MULTI30K_SHA256 = {
    "train.de": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "test_2016_flickr.de": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "test_2017_flickr.de": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
    "test_2017_flickr.en": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    "test_2017_flickr.fr": "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496",
    "test_2018_flickr.de": "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608",
    "test_2018_flickr.en": "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d",
    "test_2018_flickr.fr": "fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501",
}
LANGS = {"multi30k": ("en", "de", "fr"), "cmn_eng": ("en", "zh"), "eng_fra": ("en", "fr")}
# the PyTorch tutorial's filter: English sides that start with these
ENG_PREFIXES = (
    "i am ",
    "i m ",
    "he is",
    "he s ",
    "she is",
    "she s ",
    "you are",
    "you re ",
    "we are",
    "we re ",
    "they are",
    "they re ",
)


def _check_multi30k(path: Path) -> str:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            n = sum(1 for _ in f)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise RnnlabError(
            f"{path} is not a gzip file of UTF-8 sentences ({err}); download it again from {MULTI30K_URL}"
        ) from None
    return f"{n} lines"


def _check_pairs(path: Path) -> str:
    """``cmn.txt`` / ``eng-fra.txt`` (or a zip holding one): tab-separated lines with at least two fields."""
    lines = _read_pair_lines(path)
    bad = next((i for i, line in enumerate(lines[:1000], 1) if line.strip() and len(line.split("\t")) < 2), None)
    if not lines or bad is not None:
        raise RnnlabError(
            f"{path}: line {bad or 1} is not 'sentence TAB translation'; replace the file with the official download"
        )
    return f"{len(lines)} lines"


register(
    Source(
        "multi30k",
        files=tuple(
            RemoteFile(f"data/task1/raw/{stem}.gz", MULTI30K_URL + f"{stem}.gz", sha)
            for stem, sha in MULTI30K_SHA256.items()
        ),
        homepage="https://github.com/multi30k/dataset",
        check=_check_multi30k,
        license="research use (Flickr30k terms)",
    )
)
register(
    Source(  # the zip on manythings.org is re-exported from Tatoeba regularly: no checksum can be pinned
        "cmn_eng",
        files=(RemoteFile("cmn.txt", "https://www.manythings.org/anki/cmn-eng.zip", member="cmn.txt"),),
        homepage="https://www.manythings.org/anki/",
        check=_check_pairs,
        license="CC-BY 2.0 (France), tatoeba.org",
    )
)
register(
    Source(
        "eng_fra",
        files=(RemoteFile("data.zip", "https://download.pytorch.org/tutorial/data.zip", extracted="data"),),
        homepage="https://pytorch.org/tutorials/intermediate/seq2seq_translation_tutorial.html",
        check=_check_pairs,
    )
)


def _by_source(items: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Pairs grouped by source sentence, in first-seen order: ``(source, first translation)`` and every translation."""
    grouped: dict[str, list[str]] = {}
    for src, tgt in items:
        grouped.setdefault(src, []).append(tgt)
    return [(src, tgts[0]) for src, tgts in grouped.items()], list(grouped.values())


def _read_pair_lines(path: Path) -> list[str]:
    """The lines of a pair file: a text file, a folder holding ``eng-fra.txt`` or a zip holding ``*eng-fra.txt``."""
    if path.is_dir():
        path = path / "eng-fra.txt"
        if not path.is_file():
            raise RnnlabError(f"{path} not found: the extracted tutorial folder must hold eng-fra.txt")
    data = path.read_bytes()
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in zip_names(z, path) if n.endswith(("eng-fra.txt", "cmn.txt"))]
            if not names:
                raise RnnlabError(f"{path} holds no eng-fra.txt or cmn.txt; replace it with the official download")
            data = z.read(names[0])
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise RnnlabError(f"{path} is not UTF-8 ({err}); replace it with the official download") from None


def tutorial_normalize(s: str) -> str:
    """The PyTorch tutorial's ``normalizeString``: ASCII, lower case, ``.!?`` split off, other symbols dropped."""
    s = "".join(c for c in unicodedata.normalize("NFD", s.lower().strip()) if unicodedata.category(c) != "Mn")
    s = re.sub(r"([.!?])", r" \1", s)
    s = re.sub(r"[^a-zA-Z.!?]+", r" ", s)
    return s.strip()


def detokenize(tokens: Sequence[str], level: str) -> str:
    """Vocabulary tokens back to text: ``bpe`` exactly (the ``▁`` word starts), ``char`` by concatenation, ``word``
    by spaces with punctuation re-attached (``tom ' s .`` -> ``tom's.``)."""
    if level == "bpe":
        return "".join(tokens).replace("▁", " ").strip()
    if level == "char":
        return "".join(tokens).strip()
    s = " ".join(tokens)
    s = re.sub(r"(\w) ' (\w)", r"\1'\2", s)
    s = re.sub(r"(\d) ([.,:]) (\d)", r"\1\2\3", s)
    s = re.sub(r" ([.,!?;:%)\]}]|'s\b|n't\b)", r"\1", s)
    s = re.sub(r"([(\[{$]) ", r"\1", s)
    return s.strip()


class TranslationDataModule(SequenceDataModule):
    """Sentence pairs for :class:`~rnnlab.models.seq2seq.Seq2Seq`; see the module docstring.

    Args:
        source: ``multi30k``, ``cmn_eng`` or ``eng_fra``.
        src_lang, tgt_lang: languages of the source and the target (``en``, ``de``, ``fr``, ``zh``).
        src_level, tgt_level: units of each side: ``word``, ``char`` or ``bpe`` (None: ``char`` for Chinese,
            ``bpe`` otherwise).
        src_vocab, tgt_vocab: vocabulary size of each side including the 4 specials (BPE merges stop there; word
            and char vocabularies keep at most this many).
        min_freq: word/char units seen fewer times in training read as ``<unk>``; for BPE, the least frequent pair
            that is still merged.
        lowercase: lower-case both sides (the references for BLEU too).
        max_len: training pairs with a side longer than this many units are left out (never validation/test ones).
        test_set: the Multi30k test set (``test_2016_flickr``, ``test_2017_flickr``, ``test_2018_flickr``).
        val_fraction, test_fraction: shares of a seeded split (``cmn_eng``, ``eng_fra``).
        split_by: ``source`` (default): the split draws source sentences, so every translation of a source is on one
            side -- in validation and test one item per source, scored against all its translations (multi-reference
            BLEU, chrF); ``pair``: the split draws pairs, so a sentence can be trained on with one translation and
            tested with another (the split before 2026-12, kept to reproduce earlier figures). Multi30k has its own.
        tutorial_filter: ``eng_fra`` only: the tutorial's normalisation and filter (<= 10 words, English prefixes).
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule`.
    """

    version = 2  # 2: references are lists (every translation of a source)

    EXAMPLES = {
        "de": "Ein Hund rennt über eine grüne Wiese.",
        "en": "A dog runs across a green field.",
        "fr": "Un chien court dans un champ vert.",
        "zh": "我喜欢猫。",
    }

    @property
    def predict_examples(self) -> tuple[str, ...]:
        return (self.EXAMPLES[self.src_lang],) if self.src_lang in self.EXAMPLES else ()

    def __init__(
        self,
        source: Literal["multi30k", "cmn_eng", "eng_fra"] = "multi30k",
        src_lang: str = "de",
        tgt_lang: str = "en",
        src_level: Optional[Level] = None,
        tgt_level: Optional[Level] = None,
        src_vocab: int = 8000,
        tgt_vocab: int = 8000,
        min_freq: int = 2,
        lowercase: bool = False,
        max_len: int = 100,
        test_set: str = "test_2016_flickr",
        val_fraction: float = 0.05,
        test_fraction: float = 0.1,
        tutorial_filter: bool = False,
        split_by: Literal["source", "pair"] = "source",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if split_by not in ("source", "pair"):
            raise RnnlabError(f"split_by must be 'source' or 'pair', got {split_by!r}")
        self.split_by = split_by
        if source not in LANGS:
            raise RnnlabError(f"source must be one of {sorted(LANGS)}, got {source!r}")
        for side, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
            if lang not in LANGS[source]:
                raise RnnlabError(f"{side}={lang!r}: {source} has {', '.join(LANGS[source])}")
        if src_lang == tgt_lang:
            raise RnnlabError(f"src_lang and tgt_lang are both {src_lang!r}: pick two different languages")
        if source == "multi30k" and test_set not in MULTI30K_SPLITS[2:]:
            raise RnnlabError(f"test_set must be one of {', '.join(MULTI30K_SPLITS[2:])}, got {test_set!r}")
        for name, level in (("src_level", src_level), ("tgt_level", tgt_level)):
            if level not in (None, "word", "char", "bpe"):
                raise RnnlabError(f"{name} must be word, char or bpe, got {level!r}")
        self.source, self.src_lang, self.tgt_lang = source, src_lang, tgt_lang
        self.src_level = src_level or ("char" if src_lang == "zh" else "bpe")
        self.tgt_level = tgt_level or ("char" if tgt_lang == "zh" else "bpe")
        self.src_vocab_size, self.tgt_vocab_size_arg, self.min_freq = src_vocab, tgt_vocab, min_freq
        self.lowercase, self.max_len, self.test_set = lowercase, max_len, test_set
        self.val_fraction, self.test_fraction, self.tutorial_filter = val_fraction, test_fraction, tutorial_filter
        self.name = source
        self.vocab: Optional[Vocabulary] = None
        self.target_vocab: Optional[Vocabulary] = None
        self.refs: dict[str, list[list[str]]] = {}  # per split and item: the BLEU references
        self.sources: dict[str, list[str]] = {}  # per split: the raw source sentences

    def encoding_args(self) -> dict:
        return {
            "src": [self.src_lang, self.src_level, self.src_vocab_size],
            "min_freq": self.min_freq,
            "split_by": self.split_by,
            "tgt": [self.tgt_lang, self.tgt_level, self.tgt_vocab_size_arg],
            "lowercase": self.lowercase,
            "max_len": self.max_len,
            "test_set": self.test_set,
            "val": self.val_fraction,
            "test": self.test_fraction,
            "tutorial_filter": self.tutorial_filter,
        }

    # ------------------------------------------------------------------ reading
    def read_pairs(self) -> dict[str, list[tuple[str, str]]]:
        """``{"train"|"val"|"test": [(source sentence, target sentence), ...]}`` in raw text."""
        files = fetch(self.source, self.root, self.local_dir)
        if self.source == "multi30k":
            splits = {"train": "train", "val": "val", "test": self.test_set}
            out = {}
            for split, stem in splits.items():
                sides = []
                for lang in (self.src_lang, self.tgt_lang):
                    with gzip.open(files[f"data/task1/raw/{stem}.{lang}.gz"], "rt", encoding="utf-8") as f:
                        sides.append(f.read().splitlines())
                if len(sides[0]) != len(sides[1]):
                    raise RnnlabError(
                        f"multi30k {stem}: {len(sides[0])} {self.src_lang} lines but {len(sides[1])} "
                        f"{self.tgt_lang} lines; the files are damaged -- download them again"
                    )
                out[split] = list(zip(*sides))
            return out
        path = files["cmn.txt" if self.source == "cmn_eng" else "data.zip"]
        other = "zh" if self.source == "cmn_eng" else "fr"
        pairs = []
        for n, line in enumerate(_read_pair_lines(path), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise RnnlabError(f"{path} line {n}: expected 'English TAB {other}', got {line[:60]!r}")
            en, xx = fields[0].strip(), fields[1].strip()
            if self.source == "eng_fra" and self.tutorial_filter:
                en, xx = tutorial_normalize(en), tutorial_normalize(xx)
                if not (len(en.split()) < 10 and len(xx.split()) < 10 and en.startswith(ENG_PREFIXES)):
                    continue
            by_lang = {"en": en, other: xx}
            pairs.append((by_lang[self.src_lang], by_lang[self.tgt_lang]))
        if self.split_by == "pair":
            test, val, train = seeded_split(pairs, [self.test_fraction, self.val_fraction], self.seed)
            return {"train": train, "val": val, "test": test}
        sources = sorted({src for src, _ in pairs})
        parts = seeded_split(sources, [self.test_fraction, self.val_fraction], self.seed)
        side = {src: split for split, part in zip(("test", "val", "train"), parts) for src in part}
        return {split: [p for p in pairs if side[p[0]] == split] for split in ("train", "val", "test")}

    # ----------------------------------------------------------------- building
    def build(self, state: Optional[dict]) -> dict:
        pairs = self.read_pairs()
        for split in ("train", "val", "test"):
            if not pairs.get(split):
                raise RnnlabError(f"{self.source}: the {split!r} split is empty; check the data and the split sizes")
        if state is None:
            train = pairs["train"]
            vocabs = [
                Vocabulary.build(
                    [p[side] for p in train],
                    level=level,
                    lowercase=self.lowercase,
                    max_size=size,
                    min_freq=self.min_freq,
                    extra_specials=(BOS, EOS),
                )
                for side, level, size in (
                    (0, self.src_level, self.src_vocab_size),
                    (1, self.tgt_level, self.tgt_vocab_size_arg),
                )
            ]
            state = {
                "src": vocabs[0].to_str(),
                "tgt": vocabs[1].to_str(),
                "src_level": self.src_level,
                "tgt_level": self.tgt_level,
            }
        self.on_state(state)
        encoded = {}
        for split, items in pairs.items():
            alternatives = [[t] for _, t in items]
            if split != "train" and self.source != "multi30k" and self.split_by == "source":
                items, alternatives = _by_source(items)  # one item per source, all its translations as references
            src = self.vocab.encode([s for s, _ in items])
            tgt = self.target_vocab.encode([t for _, t in items])
            keep = [
                i
                for i in range(len(items))
                if src[i] and tgt[i] and (split != "train" or max(len(src[i]), len(tgt[i])) <= self.max_len)
            ]
            encoded[split] = {
                "tokens": [torch.tensor(src[i], dtype=torch.int32) for i in keep],
                "targets": [torch.tensor([self.bos_id, *tgt[i], self.eos_id], dtype=torch.int32) for i in keep],
                "sources": [items[i][0] for i in keep],
                "references": [[self.normalized_target(t) for t in alternatives[i]] for i in keep],
            }
        return {"state": state, "splits": encoded}

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["src"])
        self.target_vocab = Vocabulary.from_str(state["tgt"])
        self.src_level, self.tgt_level = state["src_level"], state["tgt_level"]
        for vocab in (self.vocab, self.target_vocab):
            if vocab.token_to_id(BOS) != 2 or vocab.token_to_id(EOS) != 3:
                raise RnnlabError("the vocabulary is malformed: <bos> must be id 2 and <eos> id 3")

    def make_dataset(self, split: str, data: dict) -> SequenceDataset:
        self.refs[split], self.sources[split] = data["references"], data["sources"]
        return SequenceDataset(data["tokens"], data["targets"])

    # ----------------------------------------------------------------- text out
    def normalized_target(self, text: str) -> str:
        """A target sentence as the target tokeniser normalises it, detokenised (the BLEU reference)."""
        return detokenize(self.target_vocab.split(text), self.tgt_level)

    def references(self, split: str) -> list[str]:
        """The first reference of every item of ``split`` (the translation its loss is computed on)."""
        return [refs[0] for refs in self.refs[split]]

    def all_references(self, split: str) -> list[list[str]]:
        """Every reference of every item (one, except for a source with several translations in the data)."""
        return self.refs[split]

    def source_text(self, split: str, i: int) -> str:
        return self.sources[split][i]

    def decode_target(self, ids: Sequence[int]) -> str:
        """Generated ids (stopping at ``<eos>``, skipping ``<pad>``/``<bos>``) -> text."""
        return detokenize(self.target_vocab.decode_generated(ids, self.bos_id, self.eos_id), self.tgt_level)

    def source_tokens(self, ids: Sequence[int]) -> list[str]:
        return self.vocab.decode([int(i) for i in ids if int(i) > 0])

    def target_tokens(self, ids: Sequence[int]) -> list[str]:
        return self.target_vocab.tokens_until_eos(ids, self.eos_id)

    # ----------------------------------------------------------------- predict
    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        for raw in texts:
            if not raw.strip():
                items.append({"input": raw, "error": "empty line: nothing to translate"})
                continue
            enc = self.vocab.tokenizer.encode(raw, add_special_tokens=False)
            if not enc.ids:
                items.append({"input": raw, "error": "no token the model can read in this line"})
                continue
            item = {"input": raw, "tokens": torch.tensor(enc.ids, dtype=torch.int32)}
            unknown = [raw[a:b] for (a, b), i in zip(enc.offsets, enc.ids) if i == self.vocab.unk_id]
            if unknown:
                shown = ", ".join(repr(u) for u in list(dict.fromkeys(unknown))[:5])
                item["warning"] = (
                    f"{len(unknown)} of {len(enc.ids)} source tokens unseen in training, read as <unk>: {shown}"
                )
            items.append(item)
        return items

    prediction_row = TranslationRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        row = {"translation": self.decode_target(output["generated"].tolist())}
        if "score" in output:
            row["score"] = round(float(output["score"]), 4)
        return row

    def describe_task(self) -> Task:
        return replace(
            super().describe_task(),
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            target_lang=self.tgt_lang,
            decode_target=self.decode_target,
            references=self.all_references,
        )

    # ------------------------------------------ properties the CLI links into the model
    @property
    def bos_id(self) -> int:
        """``<bos>`` in the target vocabulary (the vocabulary is built with it there, and checked when loaded)."""
        return 2

    @property
    def eos_id(self) -> int:
        """``<eos>`` in the target vocabulary (as ``bos_id``)."""
        return 3

    @property
    def tgt_vocab_size(self) -> int:
        self._ensure_state()
        return len(self.target_vocab)
