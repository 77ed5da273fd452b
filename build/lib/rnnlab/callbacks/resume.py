"""Surviving a killed job: ``last.ckpt`` on a step or time cadence and when the job is told to stop, with the RNG
state, so ``--ckpt_path last`` continues exactly where the run was (model, optimiser, scheduler, loops, the position
in the epoch via :class:`~rnnlab.data.base.ResumableDataLoader`, and the random numbers of dropout)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from rnnlab.compat import mark_saved, request_stop, save_last
from rnnlab.errors import RnnlabError


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<run>/checkpoints/last.ckpt`` at the end of every epoch, every ``every_n_train_steps`` optimiser steps
    or else every ``minutes`` of training (0 disables each), and once more when the process gets SIGTERM (SLURM's warning before a time limit
    or a preemption; Lightning stops after the current batch). Lightning writes checkpoints to a temporary file and
    renames it, so a kill or a full disk during a save leaves the previous ``last.ckpt`` intact.

    Every checkpoint of the run (this one's and the best-model ones) also carries the torch and Python RNG states;
    they are restored just before the first resumed batch, so a resumed run draws the same dropout masks as an
    uninterrupted one."""

    REQUEUE_SIGNAL = signal.SIGUSR1  # scripts/slurm/train.sbatch: #SBATCH --signal=SIGUSR1@90

    def __init__(self, every_n_train_steps: int = 0, minutes: float = 15.0) -> None:
        if every_n_train_steps < 0 or minutes < 0:
            raise RnnlabError("last_checkpoint.every_n_train_steps and last_checkpoint.minutes must be >= 0")
        super().__init__(
            monitor=None,
            save_top_k=0,
            save_last=True,
            every_n_epochs=0,
            every_n_train_steps=every_n_train_steps or None,
            train_time_interval=timedelta(minutes=minutes) if minutes and not every_n_train_steps else None,
        )
        self._pending_rng: Optional[dict] = None
        self._requeue = False
        self._previous_handler = None

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        # as ModelCheckpoint, without telling the loggers: W&B's model artifacts follow the best-model callback
        trainer.save_checkpoint(filepath, self.save_weights_only)
        mark_saved(self, trainer, filepath)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Also at the end of every epoch (after its validation): ``last.ckpt`` is this callback's file alone."""
        if not (trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != "fit"):
            save_last(self, trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        pass  # epoch-end saves happen in on_train_epoch_end, after validation

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Takes the requeue signal before Lightning would (its SLURM handler saves an ``hpc_ckpt`` mid-batch, which
        ``--ckpt_path last`` does not read): one signal, one checkpoint, one place."""
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self._requeue = False
            self._previous_handler = signal.signal(self.REQUEUE_SIGNAL, partial(self._on_requeue_signal, trainer))

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(self.REQUEUE_SIGNAL, self._previous_handler)
            self._previous_handler = None
        super().teardown(trainer, pl_module, stage)

    def _on_requeue_signal(self, trainer, signum, frame) -> None:
        """SIGUSR1 (SLURM's warning before the time limit): stop after the batch in flight as on SIGTERM -- Lightning
        agrees on it across ranks -- then :meth:`on_exception` saves ``last.ckpt`` and requeues the job."""
        self._requeue = True
        request_stop(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.dirpath:
            save_last(self, trainer)
            signal_name = "SIGUSR1" if self._requeue else "SIGTERM"
            rank_zero_info(f"{signal_name}: saved {self.last_model_path}; resume with --ckpt_path last")
            if self._requeue and trainer.is_global_zero:
                requeue()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["rnnlab_rng"] = {"torch": torch.get_rng_state(), "python": list(_py_state())}
        version = trainer.logger.version if trainer.logger is not None else None
        if isinstance(version, str):  # a W&B run id: a resumed fit continues that run
            checkpoint["rnnlab_logger"] = {"class": type(trainer.logger).__name__, "version": version}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rnnlab_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._pending_rng = checkpoint.get("rnnlab_rng")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._pending_rng is not None:
            state, self._pending_rng = self._pending_rng, None
            torch.set_rng_state(state["torch"])
            version, internal, gauss = state["python"]
            random.setstate((version, tuple(internal), gauss))
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])


def _py_state():
    version, internal, gauss = random.getstate()
    return version, list(internal), gauss


def find_last_checkpoint(root: Path) -> Optional[Path]:
    """The most recently written ``last.ckpt`` under ``root`` (e.g. ``runs/imdb_lstm``), or None."""
    found = [p for p in root.glob("*/checkpoints/last.ckpt") if p.is_file()] if root.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def requeue() -> None:
    """``scontrol requeue`` this SLURM job (its array task), so it restarts and resumes with ``--ckpt_path last``;
    outside SLURM nothing to do."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not job:
        rank_zero_info("SIGUSR1 outside SLURM: stopped after saving; no job to requeue")
        return
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        rank_zero_info(f"could not requeue SLURM job {job} ({err}); resume it by hand with --ckpt_path last")
        return
    rank_zero_info(
        f"requeued SLURM job {job}"
        if result.returncode == 0
        else f"scontrol requeue {job} failed ({result.stderr.strip()}); resume by hand with --ckpt_path last"
    )
