"""Training throughput in real (non-padding) tokens per second, and the padding share of the batches."""

from __future__ import annotations

import time

import lightning as L


class ThroughputMonitor(L.Callback):
    """Logs ``train/tokens_per_s`` (real tokens / wall time of the epoch's training batches, all ranks) and
    ``train/padding`` (padded positions / all positions) at the end of each training epoch; keeps the last values
    in ``self.last`` for benchmarks."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def on_train_start(self, trainer, pl_module) -> None:  # a run resumed mid-epoch gets no epoch start
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._tokens = self._positions = 0
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        lengths = getattr(batch, "lengths", None)
        if lengths is not None:
            self._tokens += int(lengths.sum())
            self._positions += int(lengths.max()) * len(lengths)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._start
        if not self._positions:
            return
        world = trainer.world_size
        self.last = {
            "tokens_per_s": self._tokens * world / seconds,
            "padding": 1 - self._tokens / self._positions,
            "epoch_seconds": seconds,
        }
        pl_module.log("train/tokens_per_s", self.last["tokens_per_s"], sync_dist=False)
        pl_module.log("train/padding", self.last["padding"], sync_dist=False)
