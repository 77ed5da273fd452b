"""What every rnnlab LightningModule shares: the optimiser and the learning-rate schedule from typed arguments."""

from __future__ import annotations

import inspect
import math

import lightning as L
import torch

from rnnlab.compat import batch_in_epoch
from rnnlab.contract import Task
from rnnlab.errors import RnnlabError
from rnnlab.nn.recurrent import RecurrentSpec
from rnnlab.optim import OneCycle, OptimizerSpec, Schedule, adamw, configure


class RnnlabModule(L.LightningModule):
    """Base module. Subclasses call ``super().__init__()`` and ``self.save_hyperparameters()``.

    Evaluation: a subclass implements :meth:`evaluate` (one validation/test batch; update metrics) and may implement
    :meth:`epoch_end` (compute and log them); ``validation_step``/``test_step`` and the epoch-end hooks call them.

    Optimisation: a subclass takes ``optimizer`` (any torch optimiser, LightningCLI's ``OptimizerCallable``) and
    ``scheduler`` (a :class:`rnnlab.optim.Schedule`) and hands them to :meth:`optimize_with` (see :mod:`rnnlab.optim`).
    A ``--optimizer`` / ``--lr_scheduler`` given to the CLI (LightningCLI's own) replaces this.
    """

    task: Task = Task()  # what the data says about itself; the DataModule binds it at the end of its setup

    optimizer_spec: OptimizerSpec = adamw(2e-3)
    schedule: Schedule = OneCycle(0.1)

    def optimize_with(self, optimizer: OptimizerSpec, scheduler: Schedule) -> None:
        """Keep the optimiser and the schedule for :meth:`configure_optimizers` (not in the hyperparameters: a run's
        ``config.yaml`` records them, and a checkpoint then holds only plain values)."""
        self.optimizer_spec, self.schedule = optimizer, scheduler

    def init_parts(self, rnn, optimizer: OptimizerSpec, scheduler: Schedule, ignore: tuple = ()) -> RecurrentSpec:
        """The first line of a model's ``__init__`` (after ``super().__init__()``): saves its hyperparameters (the
        parts given as objects -- ``rnn``, ``optimizer``, ``scheduler`` and ``ignore`` -- kept out), keeps the
        optimiser and schedule (:meth:`optimize_with`) and returns the completed ``rnn`` spec (:meth:`recurrent`)."""
        caller = inspect.currentframe().f_back  # the model's __init__, whose arguments are the hyperparameters
        self.save_hyperparameters(ignore=["rnn", "optimizer", "scheduler", *ignore], frame=caller, logger=False)
        self.optimize_with(optimizer, scheduler)
        return self.recurrent(rnn)

    def recurrent(self, rnn) -> RecurrentSpec:
        """The model's ``rnn`` settings with the fields left None taken from its signature's default; recorded in the
        hyperparameters as ``rnn`` (a dict: ``--ckpt_path`` rebuilds the model from it) and flat
        (``hparams.hidden_size``, ``hparams.cell``, ..., as checkpoints have always kept them)."""
        default = inspect.signature(type(self).__init__).parameters["rnn"].default
        spec = (RecurrentSpec(**rnn) if isinstance(rnn, dict) else rnn or RecurrentSpec()).over(default)
        self.hparams.update({**spec.settings(), "rnn": spec.settings()})  # "rnn": what a checkpoint rebuilds it from
        return spec

    def bind_task(self, task: Task, stage: str = "fit") -> None:
        """Receive the DataModule's :class:`~rnnlab.contract.Task` for ``stage`` (the DataModule calls it at the end
        of its ``setup``, before the callbacks' and this module's own ``setup``), then :meth:`on_task`."""
        self.task = task
        self.on_task(stage)

    def on_task(self, stage: str) -> None:
        """State derived from the data (class priors, counted experts, pre-trained vectors). It runs before the
        callbacks' ``setup``, so a copy a callback takes there (e.g. EMA's averaged model) already holds it."""

    def lr_scale(self, name: str) -> float:
        """Learning-rate multiplier of parameter ``name`` (discriminative learning rates); 1 here."""
        return 1.0

    def will_train(self, name: str, param: torch.nn.Parameter) -> bool:
        """Whether parameter ``name`` joins the optimiser (a frozen one that thaws later must)."""
        return param.requires_grad

    def evaluate(self, batch, stage: str):
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def epoch_end(self, stage: str) -> None:
        """After all ``stage`` batches (``val`` or ``test``): compute, log and reset epoch metrics."""

    def validation_step(self, batch, batch_idx: int):
        return self.evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int):
        return self.evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self.epoch_end("test")

    def on_before_backward(self, loss) -> None:
        """Stop at the first non-finite training loss, before it reaches the weights: the checkpoints written so
        far are the last good ones."""
        if not torch.isfinite(loss.detach()).all():
            trainer = self.trainer
            raise RnnlabError(
                f"the training loss is {float(loss.detach()):.4g} at step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}, batch {batch_in_epoch(trainer)}); training stopped before "
                f"the weights were touched, so the last checkpoint in the run's checkpoints/ folder is good. Lower "
                f"model.init_args.optimizer.init_args.lr, set trainer.gradient_clip_val, or train in 32-bit precision; resume with "
                f"--ckpt_path last"
            )

    def configure_optimizers(self):
        """The model's ``optimizer`` and ``scheduler`` (:mod:`rnnlab.optim`) over the parameters that train, grouped
        by weight decay and :meth:`lr_scale`."""
        named = [(n, p) for n, p in self.named_parameters() if self.will_train(n, p)]
        return configure(named, self.optimizer_spec, self.schedule, self._stepping_batches, self.lr_scale)

    def _stepping_batches(self) -> float:
        """Optimiser steps of the whole fit, for the schedule. As ``trainer.estimated_stepping_batches``, but
        counted on a throw-away train loader of the DataModule (``Task.train_batches``): Lightning's property builds the real loader
        before a checkpoint's loop state is restored, and a run resumed mid-epoch would then restart the epoch."""
        trainer = self.trainer
        if self.task.train_batches is None or trainer.max_epochs in (None, -1):
            return trainer.estimated_stepping_batches
        try:
            n = self.task.train_batches()
        except TypeError:  # an iterable without a length
            return trainer.estimated_stepping_batches
        limit = trainer.limit_train_batches
        n = min(n, int(limit)) if isinstance(limit, int) else int(n * limit)
        total = math.ceil(n / trainer.accumulate_grad_batches) * trainer.max_epochs
        return min(total, trainer.max_steps) if trainer.max_steps > 0 else total
