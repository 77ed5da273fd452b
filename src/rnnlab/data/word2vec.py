"""Training pairs for word2vec (Mikolov et al. 2013): skip-gram ``(centre, context)`` and CBOW ``(centre, window)``.

The corpus (IMDB train + unsup reviews, or any UTF-8 file with one document per line) is tokenised once with the
same normaliser as the IMDB classifier (so pre-trained vectors line up with its vocabulary word by word) and cached.
Each epoch, vectorised over the whole corpus in chunks (no Python loop per pair):

1. documents are shuffled, frequent words are subsampled (kept with probability
   ``min(1, sqrt(t / f) + t / f)``, ``f`` = the word's share of the corpus: the rule of word2vec's released C code);
2. every kept word gets a window radius ``b ~ U{1..window}`` (the C code's dynamic window, which weights near
   context more) and its context is the kept words at distance ``<= b`` in the same document -> ``[N, 2 * window]``
   with ``-1`` where there is none;
3. skip-gram: one ``(centre, context)`` pair per valid cell; CBOW: one ``(centre, window row)`` per word with any
   context. Pairs are shuffled within a chunk and cut into batches.

Negatives are drawn by the model (:class:`~rnnlab.models.word2vec.Word2Vec`) from the unigram^0.75 distribution of
the counts kept in this module's state. Under DDP every rank generates the same stream (seeded by seed and epoch)
and takes every ``world``-th batch of it, whole groups only: disjoint data, equal batch counts; the evaluation
stream instead splits every batch across the ranks (each pair counted once, even when there are few batches).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator, Literal, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from rnnlab.contract import NeighboursRow, Task
from rnnlab.data.base import SequenceDataModule, pack_sequences, seeded_split
from rnnlab.data.imdb import ARCHIVE, read_archive
from rnnlab.data.sources import fetch
from rnnlab.data.text import Vocabulary
from rnnlab.errors import RnnlabError

__all__ = ["Word2VecDataModule", "keep_probabilities", "subsample", "window_contexts", "make_pairs"]


def keep_probabilities(counts: Tensor, t: float) -> Tensor:
    """Probability of keeping each word in subsampling, ``min(1, sqrt(t/f) + t/f)``; ``t <= 0`` keeps all."""
    counts = counts.double()
    if t <= 0:
        return torch.ones_like(counts)
    f = counts / counts.sum().clamp(min=1)
    ratio = t / f.clamp(min=1e-30)
    return (ratio.sqrt() + ratio).clamp(max=1.0)


def subsample(ids: Tensor, doc: Tensor, keep: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Drop each occurrence of word ``w`` with probability ``1 - keep[w]``; returns the kept ``(ids, doc)``."""
    mask = torch.rand(len(ids), generator=generator, dtype=torch.float64) < keep[ids]
    return ids[mask], doc[mask]


def window_contexts(
    ids: Tensor, doc: Tensor, window: int, generator: Optional[torch.Generator] = None, dynamic: bool = True
) -> Tensor:
    """``[N, 2 * window]`` context ids of every position (offsets ``-window..-1, 1..window``), ``-1`` where the
    neighbour is outside the sequence, in another document, or beyond the position's radius ``b`` (``U{1..window}``
    when ``dynamic``, else ``window``)."""
    n = len(ids)
    offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)])
    if dynamic:
        radius = torch.randint(1, window + 1, (n,), generator=generator)
    else:
        radius = torch.full((n,), window)
    pos = torch.arange(n).unsqueeze(1) + offsets
    inside = (pos >= 0) & (pos < n) & (offsets.abs() <= radius.unsqueeze(1))
    pos = pos.clamp(0, max(n - 1, 0))
    valid = inside & (doc[pos] == doc.unsqueeze(1))
    return torch.where(valid, ids[pos], torch.full_like(pos, -1))


def make_pairs(ids: Tensor, context: Tensor, mode: Literal["skipgram", "cbow"]) -> tuple[Tensor, Tensor]:
    """Skip-gram: ``(centre [P], context [P])`` for every valid cell; CBOW: ``(centre [N'], window [N', 2W])`` for
    every position with at least one context word (``-1`` marks empty slots)."""
    valid = context >= 0
    if mode == "skipgram":
        return ids.unsqueeze(1).expand_as(context)[valid], context[valid]
    has = valid.any(1)
    return ids[has], context[has]


class PairStream(IterableDataset):
    """Batches ``(centre, context)`` of one epoch, regenerated per epoch (see the module docstring)."""

    def __init__(
        self,
        ids: Tensor,
        doc_lengths: Tensor,
        keep: Tensor,
        mode: str,
        window: int,
        batch_size: int,
        seed: int,
        chunk_tokens: int = 1 << 20,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.ids, self.doc_lengths, self.keep = ids, doc_lengths, keep
        self.mode, self.window, self.batch_size, self.seed = mode, window, batch_size, seed
        self.chunk_tokens, self.rank, self.world, self.shuffle = chunk_tokens, rank, world, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        # the same stream on every rank: seeded by (seed, epoch) only; evaluation streams are fixed
        g = torch.Generator().manual_seed(self.seed * 100_003 + (self.epoch if self.shuffle else 0))
        n_docs = len(self.doc_lengths)
        starts = torch.cumsum(self.doc_lengths, 0) - self.doc_lengths
        order = torch.randperm(n_docs, generator=g) if self.shuffle else torch.arange(n_docs)
        # documents in chunks of about chunk_tokens tokens
        cum = torch.cumsum(self.doc_lengths[order], 0)
        bounds = (
            torch.searchsorted(
                cum, torch.arange(self.chunk_tokens, int(cum[-1]) + self.chunk_tokens, self.chunk_tokens), right=True
            ).tolist()
            if n_docs
            else []
        )
        lo = 0
        for hi in dict.fromkeys(min(b, n_docs) for b in bounds):
            docs = order[lo:hi]
            lo = hi
            if len(docs) == 0:
                continue
            lengths = self.doc_lengths[docs]
            token_pos = torch.repeat_interleave(starts[docs], lengths) + (
                torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
            )
            ids = self.ids[token_pos]
            doc = torch.repeat_interleave(torch.arange(len(docs)), lengths)
            ids, doc = subsample(ids, doc, self.keep, g)
            centre, context = make_pairs(ids, window_contexts(ids, doc, self.window, g), self.mode)
            perm = torch.randperm(len(centre), generator=g) if self.shuffle else torch.arange(len(centre))
            for b in range(0, len(perm), self.batch_size):
                idx = perm[b : b + self.batch_size]
                yield centre[idx], context[idx]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self.shuffle:  # evaluation: every batch is split across the ranks, so all pairs count exactly once
            for centre, context in self._batches():
                if len(centre) >= self.world:
                    parts = torch.arange(len(centre)).tensor_split(self.world)[self.rank]
                    yield centre[parts], context[parts]
            return
        group, groups = [], 0
        for batch in self._batches():
            group.append(batch)
            if len(group) == self.world:  # only whole groups: every rank gets the same number of batches
                groups += 1
                yield group[self.rank]
                group = []
        if groups == 0:  # the same on every rank (same stream): all stop together with the reason
            raise RnnlabError(
                f"an epoch of this corpus gives fewer than {self.world} batch(es) of {self.batch_size} examples after "
                f"subsampling, so nothing would train: lower data.batch_size or data.subsample_t (0 keeps every word), "
                f"or give a larger corpus"
            )


class Word2VecDataModule(SequenceDataModule):
    """A corpus for word2vec: ``corpus="imdb"`` (the official IMDB train + unsup reviews, never the test reviews),
    ``"tang"`` (the Tang poems, for Chinese character vectors with ``level: char``) or the path of a UTF-8 text file
    with one document per line. A seeded ``val_docs`` documents are held out: the
    model reports its negative-sampling loss on their (fixed) pairs as ``val/loss``.

    Args:
        corpus: ``imdb``, ``tang`` or a text file.
        level: ``word`` units, or ``char`` (every character a unit: Chinese).
        mode: ``skipgram`` (pairs) or ``cbow`` (centre + window); the model's ``mode`` must match (the CLI links it).
        window: maximum context distance (a radius ``U{1..window}`` is drawn per word).
        subsample_t: the subsampling threshold ``t`` (``1e-3`` .. ``1e-5``; 0 keeps every word).
        max_vocab / min_count: vocabulary size (with ``<pad>``/``<unk>``) and minimum corpus count; rarer words are
            dropped from the corpus (not trained as ``<unk>``).
        lowercase: lower-case before tokenising (match the classifier that will use the vectors).
        val_docs: documents held out for ``val/loss``.
        batch_size: pairs (skip-gram) or centre words (CBOW) per batch.
        chunk_tokens: corpus tokens turned into pairs at once (memory: about ``chunk_tokens * 2 * window * 8`` bytes).
    """

    name = "word2vec"
    html_breaks = True

    def __init__(
        self,
        corpus: str = "imdb",
        mode: Literal["skipgram", "cbow"] = "skipgram",
        window: int = 5,
        subsample_t: float = 1e-4,
        max_vocab: Optional[int] = 50000,
        min_count: int = 5,
        lowercase: bool = True,
        level: Literal["word", "char"] = "word",
        val_docs: int = 500,
        chunk_tokens: int = 1 << 20,
        batch_size: int = 4096,
        **kwargs,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if mode not in ("skipgram", "cbow"):
            raise RnnlabError(f"mode must be 'skipgram' or 'cbow', got {mode!r}")
        if window < 1:
            raise RnnlabError(f"window must be >= 1, got {window}")
        self.corpus, self.mode, self.window, self.subsample_t = corpus, mode, window, subsample_t
        self.max_vocab, self.min_count, self.lowercase, self.level = max_vocab, min_count, lowercase, level
        self.val_docs, self.chunk_tokens = val_docs, chunk_tokens
        if corpus in ("imdb", "tang"):  # the download cache folder and registry entry
            self.name = {"imdb": "imdb", "tang": "chinese_poetry"}[corpus]
        self.vocab: Optional[Vocabulary] = None
        self.counts: Optional[Tensor] = None

    def encoding_args(self) -> dict:
        corpus = self.corpus if self.corpus in ("imdb", "tang") else str(Path(self.corpus).resolve())
        return {
            "word2vec": 1,
            "corpus": corpus,
            "max_vocab": self.max_vocab,
            "min_count": self.min_count,
            "lowercase": self.lowercase,
            "level": self.level,
            "val_docs": self.val_docs,
        }

    def read_documents(self) -> list[str]:
        if self.corpus == "imdb":
            raw = read_archive(fetch("imdb", self.root, self.local_dir)[ARCHIVE], unsup=True)
            return [t for key in ("train/pos", "train/neg", "train/unsup") for _, _, t in raw.get(key, [])]
        if self.corpus == "tang":  # 57,607 Tang poems, traditional characters: a Chinese corpus for character vectors
            from rnnlab.data.poetry import read_tang

            poems = read_tang(fetch("chinese_poetry", self.root, self.local_dir)["chinese-poetry-tang.tar.gz"])
            return [t for t in ("".join(p.get("paragraphs") or []).strip() for p in poems) if t]
        path = Path(self.corpus)
        if not path.is_file():
            raise RnnlabError(f"corpus {path} not found: give 'imdb' or a UTF-8 text file with one document per line")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise RnnlabError(f"corpus {path} is not UTF-8 ({err}); convert it, e.g. `iconv -t utf-8`") from None
        return [line for line in lines if line.strip()]

    def build(self, state: Optional[dict]) -> dict:
        docs = self.read_documents()
        if len(docs) <= self.val_docs:
            raise RnnlabError(
                f"corpus has {len(docs)} documents, not more than val_docs={self.val_docs}; "
                f"lower data.val_docs or give a larger corpus"
            )
        val, train = seeded_split(docs, [self.val_docs / len(docs)], self.seed) if self.val_docs else ([], docs)
        if state is None:
            vocab = Vocabulary.build(
                train,
                level=self.level,
                lowercase=self.lowercase,
                html_breaks=self.html_breaks,
                max_size=self.max_vocab,
                min_freq=self.min_count,
            )
        else:
            vocab = Vocabulary.from_str(state["vocab"])
        encoded = {}
        for split, texts in (("train", train), ("val", val)):
            # out-of-vocabulary words are removed, as in word2vec (they are not one <unk> word)
            encoded[split] = pack_sequences([[i for i in seq if i != vocab.unk_id] for seq in vocab.encode(texts)])
        if state is None:
            counts = torch.bincount(encoded["train"]["flat"].long(), minlength=len(vocab))
            state = {"vocab": vocab.to_str(), "counts": counts.tolist()}
        return {"state": state, "splits": encoded}

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["vocab"])
        self.counts = torch.tensor(state["counts"], dtype=torch.long)
        if len(self.vocab) < 3 or int(self.counts.sum()) == 0:
            raise RnnlabError("the word2vec vocabulary is empty: lower data.min_count or give a larger corpus")

    def make_dataset(self, split: str, data: dict) -> dict:
        return {"ids": data["flat"].long(), "lengths": data["lengths"]}

    def _stream(self, split: str, shuffle: bool) -> PairStream:
        if split not in self.datasets:
            raise RnnlabError(f"{self.name}: no {split!r} split; call setup() first")
        data = self.datasets[split]
        rank, world = self._rank_world()
        keep = keep_probabilities(self.counts, self.subsample_t)
        stream = PairStream(
            data["ids"],
            data["lengths"],
            keep,
            self.mode,
            self.window,
            self.batch_size,
            self.seed,
            self.chunk_tokens,
            rank,
            world,
            shuffle,
        )
        if shuffle and self.trainer is not None:
            stream.set_epoch(self.trainer.current_epoch)
        return stream

    def train_dataloader(self) -> DataLoader:
        # rebuilt every epoch (reload_dataloaders_every_n_epochs=1 in the configs) or re-seeded by the model hook
        self._train_stream = self._stream("train", shuffle=True)
        return DataLoader(self._train_stream, batch_size=None, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._stream("val", shuffle=False), batch_size=None, num_workers=0)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def describe_task(self) -> Task:
        return replace(super().describe_task(), counts=self.counts, mode=self.mode, set_epoch=self.set_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Called by the model at each training epoch start: a new shuffle, subsample and window draw."""
        if getattr(self, "_train_stream", None) is not None:
            self._train_stream.set_epoch(epoch)

    # ----------------------------------------------------------------- predict
    @property
    def predict_examples(self) -> tuple[str, ...]:
        return ("月", "春") if self.level == "char" else ("great", "wonderful - great + awful")

    predict_bad_example = "qqqxzzzq"

    def encode_predict(self, texts: list[str]) -> list[dict]:
        """Each line a word (its nearest neighbours) or an analogy ``a - b + c`` (the words nearest to the sum of
        the unit vectors). ``tokens`` holds ``sign * (id + 1)`` per term (0 is padding)."""
        items = []
        for raw in texts:
            text = raw.strip().lower() if self.lowercase else raw.strip()
            parts = text.replace("+", " + ").replace(" - ", " -- ").split()
            terms, sign = [], 1
            for part in parts:
                if part in ("+", "--"):
                    sign = 1 if part == "+" else -1
                    continue
                terms.append((sign, part))
                sign = 1
            if not terms:
                items.append({"input": raw, "error": "empty line: give a word, or an analogy such as 'a - b + c'"})
                continue
            ids = [self.vocab.token_to_id(w) for _, w in terms]
            unknown = [w for (_, w), i in zip(terms, ids) if i is None or i == self.vocab.unk_id]
            if unknown:
                items.append({"input": raw, "error": f"not in the vocabulary: {', '.join(map(repr, unknown))}"})
                continue
            items.append({"input": raw, "tokens": torch.tensor([s * (i + 1) for (s, _), i in zip(terms, ids)])})
        return items

    prediction_row = NeighboursRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        words = self.vocab.tokens()
        return {
            "neighbours": ", ".join(f"{words[int(i)]} {float(s):.2f}" for i, s in zip(output["ids"], output["sims"]))
        }

    @property
    def words(self) -> list[str]:
        """The vocabulary in id order."""
        self._ensure_state()
        return self.vocab.tokens()
