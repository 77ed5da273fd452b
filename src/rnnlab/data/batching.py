"""One batching path for every task: ``Batch``, ``pad_collate`` and a DDP-aware ``LengthBucketSampler``."""

from __future__ import annotations

import io
import math
from typing import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from rnnlab.contract import IGNORE_INDEX, Batch


class SequenceDataset(Dataset):
    """Encoded sequences (a list of 1-D int tensors) with optional targets; item = (tokens, target, index)."""

    def __init__(self, sequences: Sequence[Tensor], targets: Sequence | Tensor | None = None) -> None:
        if targets is not None and len(targets) != len(sequences):
            raise ValueError(f"{len(sequences)} sequences but {len(targets)} targets")
        self.sequences = sequences
        self.targets = targets

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int):
        return self.sequences[i], (None if self.targets is None else self.targets[i]), i

    def lengths(self) -> list[int]:
        return [len(s) for s in self.sequences]

    def __getstate__(self) -> dict:
        """Pickled (for loader workers started by ``spawn`` or ``forkserver``, the defaults on macOS and Windows) as one
        byte string: thousands of tensors would otherwise travel as thousands of shared-memory file descriptors, more
        than one message may carry."""
        buffer = io.BytesIO()
        torch.save(self.__dict__, buffer)
        return {"saved": buffer.getvalue()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(torch.load(io.BytesIO(state["saved"]), weights_only=True))


LAYOUTS = ("tokens", "features", "tagged", "conditioned", "image")


def pad_collate(samples: Sequence[tuple], pad_id: int = 0, layout: str = "tokens") -> Batch:
    """Stack ``(inputs [T_i, ...], target, index)`` samples into a right-padded :class:`Batch`. ``layout`` names the
    fields: ``tokens`` (ids), ``features`` (real-valued inputs), ``tagged`` (ids; a per-step target ``[T_i, 2]``
    of tag and flag becomes ``target`` and ``flags``), ``conditioned`` (inputs ``[T_i, 2]`` of id and the
    sequence's category, the same at every step: ``tokens`` and ``category [B]``), ``image`` (inputs are images
    ``[C, H, W]`` of one size, uint8 or float in [0, 1]: ``images``; the target a caption of its own length)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    seqs = [s[0] for s in samples]
    if layout == "image":
        images = torch.stack(seqs)
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        seqs = [torch.zeros(1)] * len(seqs)  # one "step" per image: the target carries the sequence
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    # per-step features ([T_i, K_i], e.g. a word's id then its characters' ids) are padded in every dimension
    trailing = [max(s.shape[d] for s in seqs) for d in range(1, seqs[0].dim())]
    tokens = torch.full((len(seqs), int(lengths.max()), *trailing), pad_id, dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        tokens[(i, *(slice(0, n) for n in s.shape))] = s
    targets = [s[1] for s in samples]
    if targets[0] is None:
        target = None
    elif isinstance(targets[0], Tensor) and targets[0].dim() > 0:
        width = max(len(t) for t in targets)  # the inputs' length for per-step targets; its own for seq2seq
        target = torch.full((len(seqs), width, *targets[0].shape[1:]), IGNORE_INDEX, dtype=targets[0].dtype)
        for i, t in enumerate(targets):
            target[i, : len(t)] = t
    else:
        target = torch.as_tensor(targets)
    index = torch.tensor([s[2] for s in samples], dtype=torch.long)
    if layout == "features":
        return Batch(None, lengths, target, index, features=tokens)
    if layout == "tagged" and target is not None:
        return Batch(tokens, lengths, target[..., 0], index, flags=target[..., 1])
    if layout == "conditioned":
        return Batch(tokens[..., 0], lengths, target, index, category=tokens[:, 0, 1])
    if layout == "image":
        return Batch(None, lengths, target, index, images=images)
    return Batch(tokens, lengths, target, index)


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length, deterministic per (seed, epoch), sharded disjointly across DDP ranks.

    Each epoch: shuffle all indices, cut them into pools of ``pool_batches * batch_size``, sort each pool by length
    and cut it into batches, then shuffle the batch order. Under DDP every rank gets the same number of batches
    and, together, every index exactly once: when the batch count does not divide by ``num_replicas`` the largest
    batches are split in two until it does (no sample is dropped or repeated, which would skew evaluation).
    ``shuffle=False`` sorts the whole dataset by length (evaluation order, minimal padding).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pool_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        if len(lengths) < num_replicas:
            from rnnlab.errors import RnnlabError

            raise RnnlabError(
                f"a split of {len(lengths)} samples cannot be shared by {num_replicas} DDP ranks (each "
                f"needs one): use fewer devices, or give the split more data"
            )
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.max_batch = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.pool_batches = pool_batches
        self.epoch = 0
        self.consumed = 0  # batches of this epoch already trained on (counted by the DataModule; for resuming)

    @property
    def sampler(self) -> "LengthBucketSampler":
        """Lightning sets the epoch of ``dataloader.batch_sampler.sampler`` (not of the batch sampler itself): this
        is that object, so every epoch gets its own shuffle."""
        return self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.consumed = 0
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        """Resume mid-epoch: the next iteration starts after the ``consumed`` batches of epoch ``epoch``."""
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])

    def _global_batches(self) -> list[Tensor]:
        n, bs = len(self.lengths), self.max_batch
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
            pool = bs * self.pool_batches
            batches = []
            for start in range(0, n, pool):
                chunk = order[start : start + pool]
                chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
                batches.extend(chunk.split(bs))
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[i] for i in perm]
        else:
            batches = list(torch.argsort(self.lengths, stable=True).split(bs))
        while len(batches) % self.num_replicas:
            big = max(range(len(batches)), key=lambda i: (len(batches[i]), -i))
            if len(batches[big]) >= 2:  # split the largest batch in two
                b = batches.pop(big)
                half = math.ceil(len(b) / 2)
                batches[big:big] = [b[:half], b[half:]]
            else:  # all batches hold one sample: merge two instead
                batches[-2:] = [torch.cat(batches[-2:])]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        skip = self.consumed  # 0 at the start of an epoch; > 0 only when resuming inside one
        for b in self._global_batches()[self.rank :: self.num_replicas][skip:]:
            yield b.tolist()

    def __len__(self) -> int:
        return len(self._global_batches()) // self.num_replicas

    def padding_fraction(self) -> float:
        """Share of padded positions among all positions in one epoch's batches (all ranks)."""
        real = padded = 0
        for b in self._global_batches():
            lens = self.lengths[b]
            real += int(lens.sum())
            padded += int(lens.max()) * len(b)
        return 1.0 - real / max(padded, 1)
