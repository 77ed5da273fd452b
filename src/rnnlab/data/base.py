"""``SequenceDataModule``: what every rnnlab DataModule shares.

A subclass says how to turn its raw files into encoded splits (:meth:`build`) and how to encode raw input for
``predict`` (:meth:`encode_predict`); this class does the rest, once for all datasets:

* the encoded form is built once and cached in ``<root>/<name>/cache/<key>.pt`` (``key`` = a hash of every
  argument that changes the encoding), under a file lock, so DDP ranks, re-runs and ``test`` after ``fit`` reuse it
  -- nothing is tokenised per epoch;
* the vocabulary / label names (``self.state``) go into every checkpoint (``state_dict``) and come back with
  ``vocab_from=<ckpt>``, so ``predict`` from a checkpoint needs no training data;
* one batching path: :class:`~rnnlab.data.batching.LengthBucketSampler` + :func:`~rnnlab.data.batching.pad_collate`,
  sharded by rank under DDP (run with ``trainer.use_distributed_sampler=false``, the CLI's default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import Optional

import lightning as L
import torch
from filelock import FileLock
from torch import Tensor
from torch.utils.data import DataLoader

from rnnlab.contract import ClassificationRow, Task
from rnnlab.data.batching import LengthBucketSampler, SequenceDataset, pad_collate
from rnnlab.errors import RnnlabError

log = logging.getLogger(__name__)


def pack_sequences(seqs: list[list[int]], dtype=torch.int32) -> dict[str, Tensor]:
    """Ragged id lists -> ``{"flat": [N], "lengths": [n]}`` (compact on disk, fast to load)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    flat = torch.tensor([i for s in seqs for i in s], dtype=dtype) if seqs else torch.zeros(0, dtype=dtype)
    return {"flat": flat, "lengths": lengths}


def unpack_sequences(packed: dict[str, Tensor]) -> list[Tensor]:
    return list(packed["flat"].long().split(packed["lengths"].tolist()))


def seeded_split(items: list, fractions: list[float], seed: int) -> list[list]:
    """``items`` in ``len(fractions) + 1`` parts drawn by a seeded permutation: part ``k`` gets
    ``max(1, round(fractions[k] * len(items)))`` items, the last part the rest; each part keeps the original order."""
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    parts, start = [], 0
    for frac in fractions:
        n = max(1, round(frac * len(items)))
        parts.append([items[i] for i in sorted(order[start : start + n])])
        start += n
    parts.append([items[i] for i in sorted(order[start:])])
    return parts


def load_checkpoint_state(path: str | os.PathLike, key: str) -> dict:
    """The DataModule state saved in a Lightning checkpoint (vocabulary, labels) -- no training data needed."""
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"checkpoint {path} not found: pass the path of a .ckpt written by `fit`")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain data only: no code runs from it
    if key not in ckpt:
        found = [k for k in ckpt if k.endswith("DataModule")]
        raise RnnlabError(
            f"checkpoint {path} holds no {key} state (it has {found or 'no DataModule state'}): it was written with "
            f"another dataset; use the matching config, or train one with this config first"
        )
    return ckpt[key]


class SequenceDataModule(L.LightningDataModule):
    """Base DataModule; see the module docstring.

    Args:
        root: download cache; the dataset lives in ``<root>/<name>/``.
        local_dir: folder holding local copies laid out as ``<name>/<official file>`` (default: ``$RNNLAB_LOCAL_DATA``).
        batch_size: samples per batch (per device under DDP).
        num_workers: DataLoader worker processes (0 is fastest on a small CPU; raise it on GPU machines).
        seed: seeds the train/val split and the batch order.
        bucket_pool: batches per length-sorting pool; larger -> less padding, less randomness.
        vocab_from: a checkpoint whose vocabulary and labels to use instead of building them (the CLI sets it from
            ``--ckpt_path`` for validate/test/predict).
        predict_file: for ``predict``: a UTF-8 file with one input per line.
        predict_texts: for ``predict``: inputs given on the command line (a list of strings).
    """

    name: str = ""  # registry name; also the folder under root
    version: int = 1  # bump when the encoded format changes
    # inputs that ``predict`` reads (shown in ``--help`` and the docs, run by the tests on every experiment), and one
    # line it must answer with a per-line error
    predict_examples: tuple[str, ...] = ()
    predict_bad_example: str = ""
    batch_layout: str = "tokens"  # how pad_collate names the batch's fields (rnnlab.data.batching.LAYOUTS)

    def __init__(
        self,
        root: str = "data",
        local_dir: Optional[str] = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 42,
        bucket_pool: int = 50,
        vocab_from: Optional[str] = None,
        predict_file: Optional[str] = None,
        predict_texts: Optional[list[str]] = None,
    ) -> None:
        super().__init__()
        self.predict_file, self.predict_texts = predict_file, predict_texts
        self.root, self.local_dir = Path(root), local_dir
        self.batch_size, self.num_workers, self.seed, self.bucket_pool = batch_size, num_workers, seed, bucket_pool
        self.vocab_from = vocab_from
        self.state: Optional[dict] = None
        self.datasets: dict[str, SequenceDataset] = {}
        self.predict_items: list[dict] = []

    # ------------------------------------------------------------- subclass API
    def encoding_args(self) -> dict:
        """Arguments that change the encoded data (they key the cache). Subclasses extend this."""
        return {}

    def build(self, state: Optional[dict]) -> dict:
        """Read the raw data, build the vocabulary on the train split (unless ``state`` gives one), encode.

        Returns ``{"state": {...vocabulary, labels...}, "splits": {split: {...}}}``.
        """
        raise NotImplementedError

    def make_dataset(self, split: str, data: dict) -> SequenceDataset:
        raise NotImplementedError

    def on_state(self, state: dict) -> None:
        """Called when ``self.state`` is set: subclasses rebuild their vocabulary objects from it."""

    def encode_predict(self, texts: list[str]) -> list[dict]:
        """Per input line: ``{"input": text, "tokens": Tensor}`` or ``{"input": text, "error": message}``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- building
    def _cache_path(self, state: Optional[dict]) -> Path:
        args = {"name": self.name, "version": self.version, "seed": self.seed, **self.encoding_args()}
        if state is not None:
            args["state"] = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
        key = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.root / self.name / "cache" / f"{key}.pt"

    def _given_state(self) -> Optional[dict]:
        """The vocabulary/labels of ``vocab_from`` (read from the checkpoint once), or None."""
        if not self.vocab_from:
            return None
        if getattr(self, "_given", None) is None:
            self._given = load_checkpoint_state(self.vocab_from, type(self).__qualname__)
        return self._given

    def _load_or_build(self, load: bool = True) -> Optional[dict]:
        """The encoded data from the cache, building the cache first if needed (``load=False``: only ensure it)."""
        given = self._given_state()
        path = self._cache_path(given)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.is_file():
                return torch.load(path, weights_only=True) if load else None
            log.info("%s: encoding the data once into %s", self.name, path)
            payload = self.build(given)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(payload, tmp)
            os.replace(tmp, path)
            return payload

    def _ensure_state(self) -> dict:
        if self.state is None:
            if self.vocab_from:  # a checkpoint's vocabulary: no data needed for predict
                self._set_state(self._given_state())
            else:
                self._set_state(self._load_or_build()["state"])
        return self.state

    def _set_state(self, state: dict) -> None:
        self.state = state
        self.on_state(state)

    # -------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        if not self.vocab_from:  # rank 0 only: download, verify, encode into the cache (setup() loads it)
            self._load_or_build(load=False)

    def setup(self, stage: str) -> None:
        if stage == "predict":
            self._ensure_state()
            self.hand_over_task(stage)
            return
        payload = self._load_or_build()
        self._set_state(payload["state"])
        self.datasets = self.make_datasets(payload["splits"])
        self.hand_over_task(stage)

    def make_datasets(self, splits: dict) -> dict[str, SequenceDataset]:
        """The datasets of ``setup`` from the cached payload's splits: one :meth:`make_dataset` each, unless a
        subclass derives them otherwise (time-series windows)."""
        return {split: self.make_dataset(split, data) for split, data in splits.items()}

    def describe_task(self) -> Task:
        """This data's :class:`~rnnlab.contract.Task` (complete after ``setup``). Subclasses add their fields with
        ``dataclasses.replace(super().describe_task(), ...)``."""
        return Task(
            vocab=getattr(self, "vocab", None),
            labels=tuple(getattr(self, "labels", None) or ()),
            pad_id=self.pad_id,
            predict_item=self._predict_item,
            train_batches=lambda: len(self.train_dataloader()),
            unit_features=self.unit_features,
        )

    def _predict_item(self, i: int) -> dict:
        return self.predict_items[i] if 0 <= i < len(self.predict_items) else {}

    def hand_over_task(self, stage: str) -> None:
        """The end of ``setup``: give the Trainer's model this data's :class:`~rnnlab.contract.Task`."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        if model is not None and hasattr(model, "bind_task"):
            model.bind_task(self.describe_task(), stage)

    def state_dict(self) -> dict:
        return dict(self._ensure_state())

    def load_state_dict(self, state_dict: dict) -> None:
        if self.state is not None and self.state != state_dict:
            raise RnnlabError(
                "the checkpoint's vocabulary/labels differ from those of the data just loaded; pass "
                "--data.vocab_from <the checkpoint> (the CLI does this for paths given to --ckpt_path)"
            )
        self._set_state(state_dict)

    # ------------------------------------------------------------ dataloaders
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def dataset(self, split: str) -> SequenceDataset:
        if split not in self.datasets:
            raise RnnlabError(f"{self.name}: no {split!r} split (have {sorted(self.datasets)}); call setup() first")
        return self.datasets[split]

    def sampler(self, split: str, shuffle: bool) -> LengthBucketSampler:
        rank, world = self._rank_world()
        return LengthBucketSampler(
            self.dataset(split).lengths(),
            self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            pool_batches=self.bucket_pool,
        )

    def collate(self, samples):
        return pad_collate(samples, pad_id=self.pad_id, layout=self.batch_layout)

    def collate_fn(self):
        """``collate`` as a plain function for loader workers (a bound method would send the DataModule along)."""
        return partial(pad_collate, pad_id=self.pad_id, layout=self.batch_layout)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return ResumableDataLoader(
            self.dataset(split),
            batch_sampler=self.sampler(split, shuffle),
            collate_fn=self.collate_fn(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator(),  # worker seeds from here, not from the global RNG (exact resumes)
        )

    def train_dataloader(self) -> DataLoader:
        self._train_loader = self._loader("train", shuffle=True)
        return self._train_loader

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Counts the training batches actually trained on (not those prefetched), for mid-epoch resumption."""
        trainer = self.trainer
        loader = getattr(self, "_train_loader", None)
        sampler = getattr(loader, "batch_sampler", None)
        if trainer is not None and trainer.training and hasattr(sampler, "consumed"):
            sampler.consumed += 1
        return batch

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ----------------------------------------------------------------- predict
    def read_predict_inputs(self) -> list[str]:
        if self.predict_texts:
            return list(self.predict_texts)
        if self.predict_file:
            path = Path(self.predict_file)
            if not path.is_file():
                raise RnnlabError(f"predict_file {path} not found: give a UTF-8 text file, one input per line")
            data = path.read_bytes()
            try:
                return data.decode("utf-8-sig").splitlines()
            except UnicodeDecodeError as err:
                line = data[: err.start].count(b"\n") + 1
                column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
                raise RnnlabError(
                    f"predict_file {path} is not UTF-8: byte 0x{data[err.start]:02x} at line {line}, column {column} "
                    f"({err.reason}); convert it, e.g. `iconv -f <its encoding> -t utf-8 {path.name}`"
                ) from None
        raise RnnlabError(
            "nothing to predict: pass --data.predict_file <file, one input per line> or "
            '--data.predict_texts \'["first text", "second text"]\''
        )

    def predict_dataloader(self) -> DataLoader:
        self._ensure_state()
        self.predict_items = self.encode_predict(self.read_predict_inputs())
        valid = [i for i, item in enumerate(self.predict_items) if "tokens" in item]
        if not valid:  # Lightning would run no predict loop at all and write nothing
            reasons = "; ".join(
                f"line {i}: {item.get('error', 'unreadable')}" for i, item in enumerate(self.predict_items[:5], start=1)
            )
            more = " ..." if len(self.predict_items) > 5 else ""
            raise RnnlabError(
                f"none of the {len(self.predict_items)} inputs can be predicted ({reasons}{more}); "
                f"give at least one non-empty input the model can read"
            )
        dataset = SequenceDataset([self.predict_items[i]["tokens"] for i in valid])
        collate = partial(_reindex_collate, collate=self.collate, index_map=valid)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, collate_fn=collate)

    prediction_row = ClassificationRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        """One output row for a predicted input. Default (classification): the label, its probability, and the
        ``top_k`` classes with probabilities, e.g. ``Russian 0.93, Czech 0.03, English 0.01``."""
        probs = output["probs"]
        order = probs.argsort(descending=True)[:top_k].tolist()
        return {
            "label": self.labels[order[0]],
            "prob": round(float(probs[order[0]]), 4),
            "top": ", ".join(f"{self.labels[i]} {float(probs[i]):.2f}" for i in order),
        }

    # ------------------------------------------ properties the CLI links into the model
    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unit_features(self) -> int:
        """Ids per step in ``tokens`` that index the vocabulary (1: ``tokens`` is ``[B, T]``)."""
        return 1

    @property
    def num_features(self) -> int:
        """Real-valued inputs per step (time series; 0: token ids)."""
        return 0

    @property
    def horizon(self) -> int:
        """Steps ahead a forecaster predicts (time series)."""
        return 1

    @property
    def char_vocab_size(self) -> int:
        """Size of the character vocabulary of a character-level word encoder (0: none)."""
        return 0

    bos_id: Optional[int] = None  # the start and end symbols' ids, where the data has them
    eos_id: Optional[int] = None

    @property
    def tgt_vocab_size(self) -> int:
        """Size of the target vocabulary of a sequence-to-sequence dataset (0: none)."""
        return 0

    in_channels: int = 0  # channels of the input images, where the inputs are images (image captioning)
    image_size: int = 0  # side of the (square) input images

    @property
    def vocab_size(self) -> int:
        """Size of the token vocabulary (0: the inputs are not token ids)."""
        self._ensure_state()
        vocab = getattr(self, "vocab", None)
        return len(vocab) if vocab is not None else 0

    @property
    def num_classes(self) -> int:
        """Label (or category) names of the data (0: none)."""
        self._ensure_state()
        return len(getattr(self, "labels", None) or [])


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position in the epoch goes into checkpoints: Lightning saves ``state_dict()`` of loaders
    that have one and calls ``load_state_dict`` when resuming, so a run killed mid-epoch continues with the next
    batch of the same epoch instead of starting the epoch again."""

    def state_dict(self) -> dict:
        return self.batch_sampler.state_dict() if hasattr(self.batch_sampler, "state_dict") else {}

    def load_state_dict(self, state: dict) -> None:
        if state and hasattr(self.batch_sampler, "load_state_dict"):
            self.batch_sampler.load_state_dict(state)


def _reindex_collate(samples, collate, index_map):
    batch = collate(samples)
    batch.index = torch.tensor([index_map[int(i)] for i in batch.index], dtype=torch.long)
    return batch
