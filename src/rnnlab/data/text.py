"""Tokenisation and vocabularies on Hugging Face ``tokenizers`` (Rust, parallel).

:class:`Vocabulary` wraps a word- or character-level ``tokenizers.Tokenizer``: it is trained on the training split
only, encodes whole lists of texts in one parallel call, and serialises to a JSON string that lives in every
checkpoint (the DataModule's ``state_dict``).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Literal, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from rnnlab.errors import RnnlabError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


class Vocabulary:
    """A trained tokenizer plus its vocabulary. ``<pad>`` is id 0 and ``<unk>`` id 1 in every vocabulary.

    ``level="word"``: words and runs of punctuation (``\\w+|[^\\w\\s]+``); ``level="char"``: every character;
    ``level="bpe"``: byte-pair-encoding subwords of whitespace-separated words (sentencepiece-style ``▁`` word
    starts, so ids decode back to the exact normalised text), ``max_size`` of them.
    ``html_breaks`` replaces the ``<br />`` tags of IMDB-style text by spaces before anything else.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.token_to_id(PAD)
        self.unk_id = tokenizer.token_to_id(UNK)
        if self.pad_id != 0 or self.unk_id != 1:
            raise RnnlabError("vocabulary is malformed: <pad> must be id 0 and <unk> id 1")

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        level: Literal["word", "char", "bpe"] = "word",
        lowercase: bool = True,
        html_breaks: bool = False,
        max_size: int | None = None,
        min_freq: int = 1,
        extra_specials: Sequence[str] = (),
    ) -> "Vocabulary":
        """Train on ``texts`` (the training split only). ``max_size`` counts the special tokens."""
        norm = []
        if html_breaks:
            norm.append(normalizers.Replace(Regex(r"<br\s*/?>"), " "))
        norm.append(normalizers.NFKC())
        if lowercase:
            norm.append(normalizers.Lowercase())
        if level not in ("word", "char", "bpe"):
            raise RnnlabError(f"level must be 'word', 'char' or 'bpe', got {level!r}")
        specials = [PAD, UNK, *extra_specials]
        size = max_size if max_size else 1 << 30
        if level == "bpe":
            if not max_size:
                raise RnnlabError("level='bpe' needs max_size (the number of subwords, e.g. 8000)")
            tok = Tokenizer(models.BPE(unk_token=UNK))
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            trainer = trainers.BpeTrainer(
                vocab_size=size, min_frequency=min_freq, special_tokens=specials, show_progress=False
            )
        else:
            tok = Tokenizer(models.WordLevel(unk_token=UNK))
            tok.pre_tokenizer = (
                pre_tokenizers.Whitespace()
                if level == "word"
                else pre_tokenizers.Split(Regex(r"\X"), behavior="isolated")
            )
            trainer = trainers.WordLevelTrainer(
                vocab_size=size, min_frequency=min_freq, special_tokens=specials, show_progress=False
            )
        tok.normalizer = normalizers.Sequence(norm)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_counts(
        cls,
        counts: "Counter[str]",
        lowercase: bool = False,
        nfkc: bool = True,
        max_size: int | None = None,
        min_freq: int = 1,
        extra_specials: Sequence[str] = (),
    ) -> "Vocabulary":
        """A vocabulary of already-split units (words, characters, character bigrams, ...) from their training counts.

        Keys are normalised as lookups will be (NFKC when ``nfkc``, lower case when ``lowercase``) and merged; kept
        when seen ``min_freq`` times, most frequent first (ties in first-seen order), ``max_size`` counting the
        specials (``extra_specials`` follow ``<pad>``/``<unk>``: ids 2, 3, ...). Encode with :meth:`encode_units`, or
        :meth:`lookup` for character streams.
        """
        norm = ([normalizers.NFKC()] if nfkc else []) + ([normalizers.Lowercase()] if lowercase else [])
        normalizer = normalizers.Sequence(norm)
        merged: Counter[str] = Counter()
        for key, n in counts.items():
            merged[normalizer.normalize_str(key)] += n
        specials = [PAD, UNK, *extra_specials]
        kept = [k for k, n in merged.most_common() if n >= min_freq and k and k not in specials]
        if max_size:
            kept = kept[: max(max_size - len(specials), 0)]
        vocab = {k: i for i, k in enumerate(specials + kept)}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return cls(tok)

    def encode_units(self, sequences: Sequence[Sequence[str]]) -> list[list[int]]:
        """One id per unit of each already-split sequence (in one parallel call); a unit that normalises to
        several pieces gets the id of its first, one that normalises to nothing gets ``<unk>``."""
        out = []
        encodings = self.tokenizer.encode_batch(
            [list(s) for s in sequences], is_pretokenized=True, add_special_tokens=False
        )
        for seq, enc in zip(sequences, encodings):
            ids = [self.unk_id] * len(seq)
            seen = set()
            for word, i in zip(enc.word_ids, enc.ids):
                if word is not None and word not in seen:
                    seen.add(word)
                    ids[word] = i
            out.append(ids)
        return out

    def lookup(self, units: Iterable[str]) -> list[int]:
        """Ids of units taken as they are (no normalisation, whitespace is a symbol: character streams)."""
        table = self.tokenizer.get_vocab()
        return [table.get(u, self.unk_id) for u in units]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, in one parallel call."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def tokenize(self, text: str) -> list[str]:
        """Vocabulary tokens of ``text`` (unknown words as ``<unk>``)."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def split(self, text: str) -> list[str]:
        """Normalised words (or characters) of ``text`` before the vocabulary lookup."""
        normalized = self.tokenizer.normalizer.normalize_str(text)
        return [piece for piece, _ in self.tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) for i in ids]

    def decode_generated(self, ids: Iterable[int], bos_id: int, eos_id: int) -> list[str]:
        """Tokens of a decoder's output ids: up to ``<eos>`` (excluded), without ``<pad>`` and ``<bos>``."""
        out = []
        for i in map(int, ids):
            if i == eos_id:
                break
            if i > 0 and i != bos_id:
                out.append(i)
        return self.decode(out)

    def tokens_until_eos(self, ids: Iterable[int], eos_id: int) -> list[str]:
        """One token per output id, ``<eos>`` included and nothing after it (the rows of an attention map)."""
        out = []
        for i in map(int, ids):
            out.append(self.tokenizer.id_to_token(i))
            if i == eos_id:
                break
        return out

    def tokens(self) -> list[str]:
        """Every token, in id order (``tokens()[i]`` has id ``i``)."""
        table = self.tokenizer.get_vocab()
        out = [""] * len(table)
        for token, i in table.items():
            out[i] = token
        return out

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_str(cls, s: str) -> "Vocabulary":
        return cls(Tokenizer.from_str(s))
