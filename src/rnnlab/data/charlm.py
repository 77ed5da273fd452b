"""Data for character language models: a text stream (tiny shakespeare, any UTF-8 file) and names per language.

* :class:`CharCorpusDataModule`: the text in three contiguous parts -- train (the first ``1 - val_fraction -
  test_fraction``), validation, test (the last ``test_fraction``, scored by ``test`` only); the character vocabulary
  comes from the training part. ``stateful`` batches (truncated BPTT): the stream is cut
  into ``batch_size`` (x DDP world size) parallel streams and batch ``i`` holds window ``i`` of every stream, so
  row ``b`` of batch ``i + 1`` continues row ``b`` of batch ``i`` and the model may carry its hidden state across
  batches. Stateless batches: the same windows, shuffled, each read from a zero state.
* :class:`NameGenerationDataModule` (one-to-many): a name and its language from the PyTorch tutorial data;
  inputs ``<bos> R o v``, targets ``R o v <eos>``; the language id rides along every step of a sample
  (``[T, 2]``) and becomes ``Batch.category [B]``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from rnnlab.contract import GenerationRow, Task
from rnnlab.data.base import ResumableDataLoader, SequenceDataModule
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.classification import stratified_split
from rnnlab.data.names import read_pytorch_names, to_ascii
from rnnlab.data.sources import RemoteFile, Source, fetch, register
from rnnlab.data.text import BOS, EOS, Vocabulary
from rnnlab.errors import RnnlabError


def _check_text(path: Path) -> str:
    """A usable text corpus: UTF-8, not empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RnnlabError(
            f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): not the official file; download it again"
        ) from None
    if not text.strip():
        raise RnnlabError(f"{path} is empty: not the official file; download it again")
    return f"{len(text)} characters"


register(
    Source(
        "tinyshakespeare",
        files=(
            RemoteFile(
                "input.txt",
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            ),
        ),
        homepage="https://github.com/karpathy/char-rnn",
        check=_check_text,
    )
)


class StreamWindows(Dataset):
    """Windows of parallel streams: item ``s * W + i`` = window ``i`` of stream ``s`` -> ``(input [L], target [L],
    index)``, the target shifted by one character."""

    def __init__(self, stream: Tensor, num_streams: int, seq_len: int) -> None:
        per_stream = (len(stream) - 1) // num_streams
        if per_stream < seq_len + 1:
            raise RnnlabError(
                f"the text ({len(stream)} tokens) is too short for {num_streams} streams of "
                f"windows of {seq_len}: lower batch_size or seq_len"
            )
        self.rows = stream[: num_streams * per_stream + 1]
        self.per_stream, self.seq_len, self.num_streams = per_stream, seq_len, num_streams
        self.windows = (per_stream - 1) // seq_len  # every window has its next character for the last target

    def __len__(self) -> int:
        return self.num_streams * self.windows

    def __getitem__(self, k: int):
        s, i = divmod(k, self.windows)
        start = s * self.per_stream + i * self.seq_len
        chunk = self.rows[start : start + self.seq_len + 1].long()
        return chunk[:-1], chunk[1:], k


class StreamBatchSampler(Sampler[list[int]]):
    """Batches of :class:`StreamWindows`. ``stateful``: batch ``i`` = window ``i`` of this rank's streams, in order;
    otherwise all windows shuffled per (seed, epoch) and dealt out to the ranks."""

    def __init__(
        self,
        windows: StreamWindows,
        batch_size: int,
        stateful: bool,
        seed: int = 0,
        rank: int = 0,
        num_replicas: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.w, self.batch_size, self.stateful, self.seed = windows, batch_size, stateful, seed
        self.rank, self.num_replicas, self.shuffle, self.epoch = rank, num_replicas, shuffle, 0
        self.consumed = 0  # batches of this epoch already trained on (counted by the DataModule; for resuming)

    @property
    def sampler(self) -> "StreamBatchSampler":
        """Lightning sets the epoch of ``batch_sampler.sampler``: this object (a new shuffle every epoch)."""
        return self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.consumed = 0
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        """Resume mid-epoch: the next iteration starts after the ``consumed`` batches of epoch ``epoch`` (a stateful
        model's carried state starts from zero there, as at an epoch's start)."""
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])

    def __iter__(self) -> Iterator[list[int]]:
        skip = self.consumed  # > 0 only when resuming inside an epoch
        for k, batch in enumerate(self._batches()):
            if k >= skip:
                yield batch

    def _batches(self) -> Iterator[list[int]]:
        W = self.w.windows
        if self.stateful:
            streams = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
            for i in range(W):
                yield [s * W + i for s in streams]
            return
        n = len(self.w)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
            if self.shuffle
            else torch.arange(n)
        ).tolist()
        per_rank = n // self.num_replicas
        mine = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        for start in range(0, len(mine), self.batch_size):
            yield mine[start : start + self.batch_size]

    def __len__(self) -> int:
        if self.stateful:
            return self.w.windows
        return -(-(len(self.w) // self.num_replicas) // self.batch_size)


class CharCorpusDataModule(SequenceDataModule):
    """A character stream for language modelling (default: tiny shakespeare, 1,115,394 characters).

    Args:
        path: any UTF-8 text file (None: tiny shakespeare from the source registry).
        seq_len: characters per window (the truncated-BPTT length).
        val_fraction: the part after the training text, for checkpoint selection and early stopping (contiguous).
        test_fraction: the last part of the text, read by ``test`` only. Score it two ways: ``stateful: true``
            carries the hidden state across the whole slice; ``stateful: false`` with ``seq_len: 256`` scores
            256-character windows each from an empty state -- in expectation nanoGPT's protocol (random 256-character
            windows), the one its figures use.
        stateful: parallel-stream batches whose hidden state may be carried across batches (see module docstring).
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule`; ``predict_texts`` are prompts.
    """

    name = "tinyshakespeare"
    predict_examples = ("ROMEO:",)
    eos_id: Optional[int] = None  # a stream has no end symbol

    def __init__(
        self,
        path: Optional[str] = None,
        seq_len: int = 128,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        stateful: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise RnnlabError(
                f"val_fraction and test_fraction must be in (0, 1) and leave text to train on, got "
                f"{val_fraction} and {test_fraction}"
            )
        if seq_len < 1:
            raise RnnlabError(f"seq_len must be >= 1, got {seq_len}")
        self.path, self.seq_len, self.val_fraction, self.stateful = path, seq_len, val_fraction, stateful
        self.test_fraction = test_fraction
        if path:
            self.name = f"text_{Path(path).stem}"
        self.vocab: Optional[Vocabulary] = None
        self.labels: list[str] = []

    def describe_task(self) -> Task:
        return replace(super().describe_task(), stateful=self.stateful)

    def encoding_args(self) -> dict:
        args = {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
        if self.path:
            p = Path(self.path)
            args["file"] = [str(p.resolve()), p.stat().st_size, p.stat().st_mtime] if p.is_file() else str(p)
        return args

    def read_text(self) -> str:
        path = Path(self.path) if self.path else fetch(self.name, self.root, self.local_dir)["input.txt"]
        if not path.is_file():
            raise RnnlabError(f"text file {path} not found: pass --data.init_args.path <a UTF-8 text file>")
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise RnnlabError(f"{path} is not UTF-8 text ({err}); convert it, e.g. iconv -t utf-8") from None
        if len(text) < 100:
            raise RnnlabError(f"{path} holds {len(text)} characters: too little text to train on")
        return text

    def build(self, state: Optional[dict]) -> dict:
        text = self.read_text()
        cut = int(len(text) * (1 - self.val_fraction - self.test_fraction))
        test_cut = int(len(text) * (1 - self.test_fraction))
        if state is None:
            state = {"vocab": Vocabulary.from_counts(Counter(text[:cut]), nfkc=False).to_str(), "labels": []}
        vocab = Vocabulary.from_str(state["vocab"])
        ids = torch.tensor(vocab.lookup(text), dtype=torch.int32)
        return {"state": state, "splits": {"train": ids[:cut], "val": ids[cut:test_cut], "test": ids[test_cut:]}}

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["vocab"])

    def make_dataset(self, split: str, data: Tensor) -> StreamWindows:
        rank, world = self._rank_world()
        return StreamWindows(data, self.batch_size * world, self.seq_len)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rank, world = self._rank_world()
        sampler = StreamBatchSampler(
            self.dataset(split), self.batch_size, self.stateful, self.seed, rank, world, shuffle=shuffle
        )
        return ResumableDataLoader(
            self.dataset(split),
            batch_sampler=sampler,
            collate_fn=self.collate_fn(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    # ----------------------------------------------------------------- predict
    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        for raw in texts:
            prompt = raw.replace("\\n", "\n")  # a newline typed on the command line
            if not prompt:
                items.append({"input": raw, "error": "empty prompt: give at least one character to start from"})
                continue
            ids = self.vocab.lookup(prompt)
            item = {"input": raw, "tokens": torch.tensor(ids), "prompt": prompt}
            unknown = sorted({c for c, i in zip(prompt, ids) if i == self.vocab.unk_id})
            if unknown:
                item["error"] = (
                    f"characters not in the training text: {', '.join(map(repr, unknown))}; the model "
                    f"cannot read them -- remove or replace them"
                )
                del item["tokens"]
            items.append(item)
        return items

    prediction_row = GenerationRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        ids = [i for i in output["generated"].tolist() if i >= 0]
        return {"output": item["prompt"] + "".join(self.vocab.decode(ids))}

    def default_prompts(self) -> list[str]:
        """Samples start from a newline (a new speech, in a play) when the text has one."""
        self._ensure_state()
        return ["\n"] if self.vocab.token_to_id("\n") is not None else [self.vocab.decode([2])[0]]


class DocumentLMDataModule(SequenceDataModule):
    """Base for language modelling on short documents (a name, a poem), each read from ``<bos>`` to ``<eos>``:
    inputs ``<bos> c1 .. cn``, targets ``c1 .. cn <eos>``. With categories (``labels``), the category id rides along
    every input step of a sample (``[T, 2]``; ``Batch.category`` in a batch) and ``predict`` inputs are
    ``"Category"`` or ``"Category:prefix"``; without, ``predict`` inputs are prefixes (an empty one starts from
    ``<bos>`` alone).

    Subclasses implement :meth:`read_documents` and may override :meth:`normalize` (applied to every document and
    ``predict`` prefix). ``min_freq``: characters seen fewer times in training read as ``<unk>`` (never generated).
    """

    bos_id, eos_id = 2, 3

    def __init__(self, min_freq: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_freq = min_freq
        self.vocab: Optional[Vocabulary] = None
        self.labels: list[str] = []

    # ------------------------------------------------------------- subclass API
    def read_documents(self) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
        """``({"train": [(text, category id or 0)], "val": ..., "test": ...}, category names or [])``."""
        raise NotImplementedError

    def normalize(self, text: str) -> str:
        return text

    # ----------------------------------------------------------------- building
    def build(self, state: Optional[dict]) -> dict:
        splits, labels = self.read_documents()
        for required in ("train", "val", "test"):
            if not splits.get(required):
                raise RnnlabError(f"{self.name}: the {required!r} split is empty; check the data and the split sizes")
        if state is None:
            counts = Counter(c for text, _ in splits["train"] for c in text)
            vocab = Vocabulary.from_counts(counts, nfkc=False, extra_specials=(BOS, EOS), min_freq=self.min_freq)
            state = {"vocab": vocab.to_str(), "labels": list(labels)}
        elif list(state["labels"]) != list(labels):
            raise RnnlabError(f"the checkpoint's categories {state['labels']} are not this data's {labels}")
        vocab = Vocabulary.from_str(state["vocab"])
        encoded = {
            split: {
                "tokens": [self._encode(vocab, text, y, bool(labels)) for text, y in docs],
                "targets": [torch.tensor(vocab.lookup(text) + [self.eos_id]) for text, _ in docs],
            }
            for split, docs in splits.items()
        }
        return {"state": state, "splits": encoded}

    def _encode(self, vocab: Vocabulary, prefix: str, category: int, with_category: bool) -> Tensor:
        ids = torch.tensor([self.bos_id] + vocab.lookup(prefix))
        return torch.stack([ids, torch.full_like(ids, category)], 1) if with_category else ids

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["vocab"])
        self.labels = list(state["labels"])

    @property
    def batch_layout(self) -> str:
        """With categories a sample's ``[T, 2]`` (id, category) become ``Batch.tokens`` and ``Batch.category``."""
        return "conditioned" if self.labels else "tokens"

    def describe_task(self) -> Task:
        return replace(super().describe_task(), bos_id=self.bos_id, eos_id=self.eos_id)

    def make_dataset(self, split: str, data: dict) -> SequenceDataset:
        return SequenceDataset(data["tokens"], data["targets"])  # <bos> c1..cn -> c1..cn <eos>

    # ----------------------------------------------------------------- predict
    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        by_name = {lang.lower(): i for i, lang in enumerate(self.labels)}
        for raw in texts:
            category, prefix, item = 0, raw.strip(), {"input": raw}
            if self.labels:
                name, _, prefix = raw.strip().partition(":")
                if name.strip().lower() not in by_name:
                    items.append(
                        {
                            "input": raw,
                            "error": f"unknown category {name.strip()!r}: use one of "
                            f"{', '.join(self.labels)} (optionally 'Category:prefix')",
                        }
                    )
                    continue
                category = by_name[name.strip().lower()]
                item["category"] = self.labels[category]
            prefix = self.normalize(prefix.strip())
            ids = self.vocab.lookup(prefix)
            if self.vocab.unk_id in ids:
                bad = sorted({c for c, i in zip(prefix, ids) if i == self.vocab.unk_id})
                items.append(
                    {
                        "input": raw,
                        "error": f"characters never seen in training: {', '.join(map(repr, bad))}"
                        f"; the model cannot continue from them",
                    }
                )
                continue
            items.append(
                {**item, "tokens": self._encode(self.vocab, prefix, category, bool(self.labels)), "prompt": prefix}
            )
        return items

    prediction_row = GenerationRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        ids = [i for i in output["generated"].tolist() if i >= 0]
        row = {"category": item["category"]} if "category" in item else {}
        return {**row, "output": item["prompt"] + "".join(self.vocab.decode(ids))}

    def default_prompts(self) -> list[str]:
        self._ensure_state()
        return list(self.labels) or [""]


class NameGenerationDataModule(DocumentLMDataModule):
    """One-to-many: a language -> a name in it, from the PyTorch tutorial's names (18 languages).

    Split per language (seeded): ``val_fraction``/``test_fraction`` held out, on which the negative log-likelihood
    per character is measured. ``predict_texts`` are languages, optionally with the first letters: ``"Russian"`` or
    ``"Russian:Ro"``.

    Args:
        ascii: the tutorial's Unicode -> ASCII conversion (False keeps accents).
        val_fraction, test_fraction: of each language's names.
    """

    name = "pytorch_names"
    predict_examples = ("Russian", "German:M")
    predict_bad_example = "Klingon:"

    def __init__(self, ascii: bool = True, val_fraction: float = 0.1, test_fraction: float = 0.1, **kwargs) -> None:
        kwargs.setdefault("batch_size", 128)
        super().__init__(**kwargs)
        self.ascii, self.val_fraction, self.test_fraction = ascii, val_fraction, test_fraction

    def encoding_args(self) -> dict:
        return {
            "ascii": self.ascii,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "min_freq": self.min_freq,
        }

    def normalize(self, text: str) -> str:
        return to_ascii(text) if self.ascii else text

    def read_documents(self) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
        by_lang = read_pytorch_names(fetch(self.name, self.root, self.local_dir)["data.zip"])
        labels = sorted(by_lang)
        rows = [(self.normalize(n), y) for y, lang in enumerate(labels) for n in by_lang[lang]]
        rows = [r for r in rows if r[0]]
        val, test, train = stratified_split([y for _, y in rows], [self.val_fraction, self.test_fraction], self.seed)
        return {
            "train": [rows[i] for i in train],
            "val": [rows[i] for i in val],
            "test": [rows[i] for i in test],
        }, labels
