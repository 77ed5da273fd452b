"""Tokenisation and vocabularies on Hugging Face ``tokenizers`` (Rust, parallel).

:class:`Vocabulary` wraps a word- or character-level ``tokenizers.Tokenizer``: it is trained on the training split
only, encodes whole lists of texts in one parallel call, and serialises to a JSON string that lives in every
checkpoint (the DataModule's ``state_dict``).
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from rnnlab.errors import RnnlabError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


class Vocabulary:
    """A trained tokenizer plus its vocabulary. ``<pad>`` is id 0 and ``<unk>`` id 1 in every vocabulary.

    ``level="word"``: words and runs of punctuation (``\\w+|[^\\w\\s]+``); ``level="char"``: every character.
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
        level: Literal["word", "char"] = "word",
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
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.normalizer = normalizers.Sequence(norm)
        if level == "word":
            tok.pre_tokenizer = pre_tokenizers.Whitespace()
        elif level == "char":
            tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\X"), behavior="isolated")
        else:
            raise RnnlabError(f"level must be 'word' or 'char', got {level!r}")
        specials = [PAD, UNK, *extra_specials]
        trainer = trainers.WordLevelTrainer(
            vocab_size=max_size if max_size else 1 << 30, min_frequency=min_freq, special_tokens=specials,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

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

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_str(cls, s: str) -> "Vocabulary":
        return cls(Tokenizer.from_str(s))
