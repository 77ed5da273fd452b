"""What every rnnlab LightningModule shares: the optimiser and the learning-rate schedule from typed arguments."""

from __future__ import annotations

import math
from typing import Literal

import lightning as L
import torch

from rnnlab.compat import batch_in_epoch
from rnnlab.contract import Task
from rnnlab.errors import RnnlabError


class RnnlabModule(L.LightningModule):
    """Base module. Subclasses call ``super().__init__()`` and ``self.save_hyperparameters()``.

    Evaluation: a subclass implements :meth:`evaluate` (one validation/test batch; update metrics) and may implement
    :meth:`epoch_end` (compute and log them); ``validation_step``/``test_step`` and the epoch-end hooks call them.

    Optimisation: hparams used here:
    ``lr``, ``weight_decay``, ``optimizer`` (adamw | adam | sgd), ``scheduler`` (onecycle | cosine | constant),
    ``warmup`` (fraction of the steps for the warm-up of ``onecycle``/``cosine``).

    A ``--optimizer`` / ``--lr_scheduler`` given to the CLI (LightningCLI's own) replaces this method.
    """

    task: Task = Task()  # what the data says about itself; the DataModule binds it at the end of its setup

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
                f"model.init_args.lr, set trainer.gradient_clip_val, or train in 32-bit precision; resume with "
                f"--ckpt_path last"
            )

    def configure_optimizers(self):
        hp = self.hparams
        by_key: dict[tuple[bool, float], list] = {}
        for name, p in self.named_parameters():
            if self.will_train(name, p):
                decays = not (p.dim() < 2 or "embedding" in name)
                by_key.setdefault((decays, self.lr_scale(name)), []).append(p)
        groups = [
            {"params": params, "weight_decay": hp.weight_decay if decays else 0.0, "lr": hp.lr * scale}
            for (decays, scale), params in sorted(by_key.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))
        ]  # decaying groups first, as before per-group learning rates (older checkpoints resume)
        if hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=hp.lr)
        elif hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9)
        else:
            raise RnnlabError(f"optimizer must be adamw, adam or sgd, got {hp.optimizer!r}")
        total = max(int(self._stepping_batches()), 1)
        if hp.scheduler == "constant" or total < 2:  # a one-step run has no schedule
            return opt
        if hp.scheduler == "onecycle":  # a warm-up of at least 1.5 steps: OneCycleLR divides by its length - 1
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in groups],
                total_steps=total,
                pct_start=min(max(hp.warmup, 1.5 / total), 0.9),
                anneal_strategy="cos",
            )
        elif hp.scheduler == "cosine":
            warm = max(int(hp.warmup * total), 1)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt,
                lambda s: min(
                    (s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(max(s - warm, 0) / max(total - warm, 1), 1.0)))
                ),
            )
        else:
            raise RnnlabError(f"scheduler must be onecycle, cosine or constant, got {hp.scheduler!r}")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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


OptimizerName = Literal["adamw", "adam", "sgd"]
SchedulerName = Literal["onecycle", "cosine", "constant"]
