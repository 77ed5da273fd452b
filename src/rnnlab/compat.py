"""Every use of Lightning's private API, in one place (Lightning 2.6). ``tests/test_compat.py`` pins the behaviour
each one relies on, so an upgrade that changes it fails there, not in a training run."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from lightning.pytorch.callbacks import ModelCheckpoint


def request_stop(trainer) -> None:
    """Stop after the batch in flight, as on SIGTERM: Lightning agrees on it across ranks and raises
    ``SIGTERMException`` at the next batch boundary."""
    trainer._signal_connector.received_sigterm = True


def batch_in_epoch(trainer) -> int:
    """The index of the training batch in flight within its epoch."""
    return trainer.fit_loop.epoch_loop.batch_idx


def save_last(callback: ModelCheckpoint, trainer) -> None:
    """Make ``callback`` write its ``last.ckpt`` now (ModelCheckpoint keeps this step to itself)."""
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def mark_saved(callback: ModelCheckpoint, trainer, filepath: str) -> None:
    """Record a checkpoint written by ``callback`` without its ``_save_checkpoint`` (which also tells the loggers),
    so ModelCheckpoint does not write the same step twice."""
    callback._last_global_step_saved = trainer.global_step
    callback._last_checkpoint_saved = filepath


class CheckpointHparamsHook:
    """Mixin for LightningCLI: ``_parse_ckpt_path`` (private; it runs after parsing, before instantiation, to put a
    checkpoint's hyperparameters into the config) calls ``apply_checkpoint_hparams``; when that returns False,
    Lightning's own behaviour runs."""

    def apply_checkpoint_hparams(self) -> bool:
        return False

    def _parse_ckpt_path(self) -> None:
        if not self.apply_checkpoint_hparams():
            super()._parse_ckpt_path()


@contextmanager
def own_hyperparameters() -> Iterator[None]:
    """Build a LightningModule inside another's ``__init__`` (a classifier's language-model expert) with its own
    hyperparameters: under LightningCLI, ``save_hyperparameters`` would otherwise take the outer module's, which
    the CLI hands over in a context variable while it instantiates the outer one."""
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

    token = _given_hyperparameters.set(None)
    try:
        yield
    finally:
        _given_hyperparameters.reset(token)
