"""``TaggingDataModule``: one tag per unit (a word's part of speech, a character's place in its word).

A dataset module says how to read its splits (:meth:`TaggingDataModule.read_splits`: sentences as unit and tag
lists), what to look up for each unit (:meth:`~TaggingDataModule.unit_keys`: the unit itself, or a character with its
neighbouring bigrams), which units count as unseen in training (:meth:`~TaggingDataModule.oov_flags`), how raw
``predict`` input is split into units and how tags are shown. Vocabularies (training split only), encoding (once,
cached) and ``predict`` are done here for all of them.

Encoded layout of one sentence of ``T`` units: ``tokens [T, F + W]`` -- ``F = unit_features`` ids in the unit
vocabulary, then (with ``char_features``) the ``W`` characters of the unit in the character vocabulary, padded
with 0 -- and ``target [T, 2]``: the tag id and a 0/1 flag "this unit (its word, for segmentation) was not seen in
training", for the out-of-vocabulary metrics.

Segmentation as tagging (``B``/``M``/``E``/``S``) and chunks (``B-X``/``I-X``/``O``): :mod:`rnnlab.spans`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from typing import Optional, Sequence

import torch

from rnnlab.contract import TaggingRow, Task
from rnnlab.data.base import SequenceDataModule
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.text import Vocabulary
from rnnlab.errors import RnnlabError
from rnnlab.spans import bio_spans, bmes_spans, bmes_to_words, word_spans, words_to_bmes  # noqa: F401 (re-exported for data modules)

Tagged = list[tuple[list[str], list[str]]]  # sentences: (units, tags)


# ------------------------------------------------------------------------------ the DataModule
class TaggingDataModule(SequenceDataModule):
    """Base for one-tag-per-unit datasets; see the module docstring.

    Args:
        lowercase: lower-case units before the vocabulary lookup (characters for the word encoder keep their case).
        normalize: NFKC-normalise units (full-width letters, digits and punctuation to half-width).
        min_freq: keep training units (and bigrams) seen at least this often; the rest read as ``<unk>``.
        max_vocab: vocabulary size including ``<pad>``/``<unk>`` (None: all).
        char_features: also give each unit its characters (for a character-level word encoder).
        max_word_chars: characters kept per unit for the word encoder (a longer word keeps its first and last halves).
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule`.
    """

    scheme = "tags"  # how tags form spans: "tags" (none), "bmes" (segmentation), "bio" (chunks)
    batch_layout = "tagged"  # batch.target: the tags, batch.flags: unseen in training
    unit_name = "word"
    labels: list[str] = []

    def __init__(
        self,
        lowercase: bool = False,
        normalize: bool = True,
        min_freq: int = 1,
        max_vocab: Optional[int] = None,
        char_features: bool = False,
        max_word_chars: int = 16,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if max_word_chars < 2:
            raise RnnlabError(f"max_word_chars must be >= 2, got {max_word_chars}")
        self.lowercase, self.normalize, self.min_freq, self.max_vocab = lowercase, normalize, min_freq, max_vocab
        self.char_features, self.max_word_chars = char_features, max_word_chars
        self.vocab: Optional[Vocabulary] = None
        self.chars: Optional[Vocabulary] = None

    # ------------------------------------------------------------- subclass API
    def read_splits(self) -> dict[str, Tagged]:
        """``{"train": [(units, tags), ...], "val": [...], "test": [...]}``."""
        raise NotImplementedError

    def unit_keys(self, units: Sequence[str]) -> list[list[str]]:
        """What to look up in the unit vocabulary for each unit: ``unit_features`` keys each (default: the unit)."""
        return [[u] for u in units]

    def known_words(self, train: Tagged) -> set[str]:
        """The words seen in training (for the out-of-vocabulary flags)."""
        return {u for units, _ in train for u in units}

    def oov_flags(self, units: Sequence[str], tags: Sequence[str], known: set[str]) -> list[int]:
        """Per unit: 1 if it was not seen in training."""
        return [int(u not in known) for u in units]

    def split_input(self, text: str) -> list[str]:
        """A raw ``predict`` input -> units (default: whitespace-separated words)."""
        return text.split()

    def render(self, units: Sequence[str], tags: Sequence[str]) -> str:
        """Predicted tags shown to a person (default: ``word/TAG`` pairs)."""
        return " ".join(f"{u}/{t}" for u, t in zip(units, tags))

    def encoding_args(self) -> dict:
        return {
            "lowercase": self.lowercase,
            "normalize": self.normalize,
            "min_freq": self.min_freq,
            "max_vocab": self.max_vocab,
            "char_features": self.char_features,
            "max_word_chars": self.max_word_chars,
            "unit_features": self.unit_features,
        }

    # ----------------------------------------------------------------- building
    def build(self, state: Optional[dict]) -> dict:
        splits = self.read_splits()
        for required in ("train", "val", "test"):
            if not splits.get(required):
                raise RnnlabError(f"{self.name}: the {required!r} split is empty; check the data and the split sizes")
        tags = sorted({t for part in splits.values() for _, ts in part for t in ts})
        if state is None:
            train = splits["train"]
            counts = Counter(k for units, _ in train for keys in self.unit_keys(units) for k in keys)
            vocab = Vocabulary.from_counts(
                counts, lowercase=self.lowercase, nfkc=self.normalize, max_size=self.max_vocab, min_freq=self.min_freq
            )
            chars = None
            if self.char_features:
                chars = Vocabulary.from_counts(
                    Counter(c for units, _ in train for u in units for c in u), nfkc=self.normalize
                )
            state = {"vocab": vocab.to_str(), "chars": chars.to_str() if chars else None, "labels": tags}
        elif not set(tags) <= set(state["labels"]):
            raise RnnlabError(
                f"the data has tags {sorted(set(tags) - set(state['labels']))} that the checkpoint's "
                f"model does not know; train on this data first"
            )
        self.on_state(state)
        known = self.known_words(splits["train"])
        index = {t: i for i, t in enumerate(state["labels"])}
        encoded = {}
        for split, sentences in splits.items():
            units = [u for u, _ in sentences]
            targets = [
                torch.tensor([[index[t] for t in ts], self.oov_flags(us, ts, known)], dtype=torch.long).T
                for us, ts in sentences
            ]
            encoded[split] = {"tokens": self.encode_units(units), "targets": targets}
        return {"state": state, "splits": encoded}

    def encode_units(self, sentences: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """Sentences of units -> ``[T, F + W]`` id tensors (see the module docstring)."""
        F = self.unit_features
        keys = [self.unit_keys(units) for units in sentences]
        flat = self.vocab.encode_units([[k for ks in sent for k in ks] for sent in keys])
        char_ids = None
        if self.chars is not None:
            half = self.max_word_chars // 2
            cut = [
                [u if len(u) <= self.max_word_chars else u[:half] + u[len(u) - half :] for u in units]
                for units in sentences
            ]
            char_ids = self.chars.encode_units([[c for u in units for c in u] for units in cut])
        out = []
        for s, units in enumerate(sentences):
            ids = torch.tensor(flat[s], dtype=torch.int32).view(len(units), F)
            if char_ids is not None:
                lens = [min(len(u), self.max_word_chars) for u in units]
                chars = torch.zeros(len(units), max(lens, default=1), dtype=torch.int32)
                for i, piece in enumerate(torch.tensor(char_ids[s], dtype=torch.int32).split(lens)):
                    chars[i, : len(piece)] = piece
                ids = torch.cat([ids, chars], dim=1)
            out.append(ids)
        return out

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["vocab"])
        self.chars = Vocabulary.from_str(state["chars"]) if state.get("chars") else None
        self.labels = list(state["labels"])

    def make_dataset(self, split: str, data: dict) -> SequenceDataset:
        keep = [i for i, t in enumerate(data["tokens"]) if len(t) > 0]
        return SequenceDataset([data["tokens"][i] for i in keep], [data["targets"][i] for i in keep])

    # ----------------------------------------------------------------- predict
    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        for raw in texts:
            units = self.split_input(raw)
            if not units:
                items.append({"input": raw, "error": f"empty input: no {self.unit_name} to tag"})
                continue
            tokens = self.encode_units([units])[0]
            item = {"input": raw, "tokens": tokens, "units": units}
            unknown = [u for u, i in zip(units, tokens[:, 0].tolist()) if i == self.vocab.unk_id]
            if unknown:
                shown = ", ".join(repr(u) for u in list(dict.fromkeys(unknown))[:5])
                item["warning"] = f"{len(unknown)} of {len(units)} {self.unit_name}s unseen in training: {shown}" + (
                    " ..." if len(set(unknown)) > 5 else ""
                )
            items.append(item)
        return items

    prediction_row = TaggingRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        tags = [self.labels[i] for i in output["tags"][: len(item["units"])].tolist()]
        return {"output": self.render(item["units"], tags)}

    # ------------------------------------------ properties the CLI links into the model
    def describe_task(self) -> Task:
        return replace(super().describe_task(), scheme=self.scheme)

    @property
    def unit_features(self) -> int:
        return len(self.unit_keys(["x"])[0])

    @property
    def char_vocab_size(self) -> int:
        self._ensure_state()
        return len(self.chars) if self.chars is not None else 0


def ptb_tokenize(text: str) -> list[str]:
    """Penn-Treebank-like tokens for raw English (``don't`` -> ``do n't``, ``U.S.`` kept, punctuation split off,
    quotes as `````/``''``), so ``predict`` input looks like the WSJ text the tagger was trained on."""
    text = re.sub(r'^"|(?<=[\s(\[{])"', " `` ", text)
    text = text.replace('"', " '' ")
    tokens = []
    for word in text.split():
        tokens.extend([word] if word in ("``", "''") else _split_punct(word))
    return tokens


_CLITIC = re.compile(r"^(.+?)('(?:s|re|ve|ll|d|m))$", re.IGNORECASE)
_ABBREV = re.compile(r"^(?:[A-Za-z]\.){2,}$|^(?:Mr|Mrs|Ms|Dr|Inc|Corp|Co|Ltd|Jr|Sr|St|Jan|Feb|Aug|Sept|Oct|Nov|Dec)\.$")


def _split_punct(word: str) -> list[str]:
    lead, trail = [], []
    while word and not word[0].isalnum() and word[0] not in "$#":
        lead.append(word[0])
        word = word[1:]
    while word and not word[-1].isalnum() and not _ABBREV.match(word) and word[-1] != "%":
        if word.endswith("..."):
            trail.insert(0, "...")
            word = word[:-3]
        else:
            trail.insert(0, word[-1])
            word = word[:-1]
    middle = []
    if word.lower().endswith("n't") and len(word) > 3:
        return lead + [word[:-3], word[-3:]] + trail
    if word.startswith("$") and len(word) > 1:
        middle, word = ["$"], word[1:]
    if word.endswith("%") and len(word) > 1:
        middle += [word[:-1], "%"]
        word = ""
    elif (match := _CLITIC.match(word)) is not None:
        middle += [match.group(1), match.group(2)]
        word = ""
    if word:
        middle.append(word)
    return lead + middle + trail
