"""Optimisers and learning-rate schedules, as a config gives them to a model.

Every model takes an ``optimizer`` (LightningCLI's :data:`OptimizerCallable`: any ``torch.optim`` class with its
arguments) and a ``scheduler`` (a :class:`Schedule`: :class:`OneCycle`, :class:`WarmupCosine` or :class:`Constant`)::

    model:
      init_args:
        optimizer:
          class_path: torch.optim.AdamW
          init_args: {lr: 0.003, weight_decay: 0.01}
        scheduler:
          class_path: rnnlab.optim.OneCycle
          init_args: {warmup: 0.1}

On the command line: ``--model.init_args.optimizer.init_args.lr=0.001``,
``--model.init_args.scheduler=rnnlab.optim.WarmupCosine``. A schedule is built once the number of optimiser steps
of the whole fit is known, which a plain ``LRSchedulerCallable`` is not told; that is why schedules are rnnlab's own.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable, Iterable, Optional, Union

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from rnnlab.errors import RnnlabError

OptimizerCallable = Callable[[Iterable], Optimizer]
OptimizerSpec = Union[OptimizerCallable, dict]


def adamw(lr: float, weight_decay: float = 0.01) -> dict:
    """A model's default optimiser, written as a config would (``class_path`` + ``init_args``), so that
    ``--print_config`` shows it and ``--model.init_args.optimizer.init_args.lr`` can change it."""
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr, "weight_decay": weight_decay}}


def build_optimizer(spec: OptimizerSpec, groups: list[dict]) -> Optimizer:
    """The optimiser of ``groups`` from ``spec``: a callable (what the CLI passes) or a ``class_path`` dict (a
    default, or a model built in Python)."""
    if callable(spec):
        return spec(groups)
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise RnnlabError(
            f"optimizer must be a torch optimizer given as class_path and init_args (e.g. class_path: "
            f"torch.optim.AdamW, init_args: {{lr: 0.002}}), got {spec!r}"
        )
    module, _, name = spec["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "torch.optim"), name)
    except (ImportError, AttributeError) as err:
        raise RnnlabError(f"optimizer class {spec['class_path']!r} not found ({err})") from None
    return cls(groups, **spec.get("init_args", {}))


class Schedule:
    """A learning-rate schedule over a whole fit of ``total_steps`` optimiser steps, stepped every step. Each group's
    learning rate at construction is its peak (groups may differ: discriminative learning rates)."""

    def build(self, optimizer: Optimizer, total_steps: int) -> Optional[LRScheduler]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class OneCycle(Schedule):
    """Smith's one-cycle: a cosine warm-up over ``warmup`` of the steps to the peak, then cosine annealing to
    ~0 (``torch.optim.lr_scheduler.OneCycleLR``, which also cycles Adam's beta1 between 0.95 and 0.85)."""

    def __init__(self, warmup: float = 0.1) -> None:
        if not 0 < warmup < 1:
            raise RnnlabError(f"OneCycle's warmup is a fraction of the steps in (0, 1), got {warmup}")
        self.warmup = warmup

    def build(self, optimizer: Optimizer, total_steps: int) -> Optional[LRScheduler]:
        if total_steps < 2:  # a one-step run has no schedule
            return None
        return OneCycleLR(  # a warm-up of at least 1.5 steps: OneCycleLR divides by its length - 1
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=min(max(self.warmup, 1.5 / total_steps), 0.9),
            anneal_strategy="cos",
        )


class WarmupCosine(Schedule):
    """A linear warm-up over ``warmup`` of the steps, then cosine decay to 0."""

    def __init__(self, warmup: float = 0.05) -> None:
        if not 0 <= warmup < 1:
            raise RnnlabError(f"WarmupCosine's warmup is a fraction of the steps in [0, 1), got {warmup}")
        self.warmup = warmup

    def build(self, optimizer: Optimizer, total_steps: int) -> Optional[LRScheduler]:
        if total_steps < 2:
            return None
        warm, total = max(int(self.warmup * total_steps), 1), total_steps

        def factor(s: int) -> float:
            return min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(max(s - warm, 0) / max(total - warm, 1), 1))))

        return LambdaLR(optimizer, factor)


class Constant(Schedule):
    """The optimiser's learning rate throughout."""

    def build(self, optimizer: Optimizer, total_steps: int) -> Optional[LRScheduler]:
        return None


def configure(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    optimizer: OptimizerSpec,
    schedule: Schedule,
    total_steps: Callable[[], int],
    lr_scale: Callable[[str], float] = lambda name: 1.0,
) -> Any:
    """What ``configure_optimizers`` returns. Parameter groups by (decays, learning-rate scale): matrices decay with
    the optimiser's ``weight_decay``; biases, norms and embeddings do not; ``lr_scale(name)`` multiplies a group's
    learning rate. Decaying groups come first (the order checkpoints were written in)."""
    by_key: dict[tuple[bool, float], list] = {}
    for name, p in named_parameters:
        decays = not (p.dim() < 2 or "embedding" in name)
        by_key.setdefault((decays, lr_scale(name)), []).append(p)
    keys = sorted(by_key, key=lambda k: (not k[0], -k[1]))
    groups = [{"params": by_key[k]} | ({} if k[0] else {"weight_decay": 0.0}) for k in keys]
    opt = build_optimizer(optimizer, groups)
    for group, (_, scale) in zip(opt.param_groups, keys):
        group["lr"] = group["lr"] * scale
    if not isinstance(schedule, Schedule):
        raise RnnlabError(
            f"scheduler must be one of rnnlab.optim.OneCycle, WarmupCosine, Constant (class_path and init_args), "
            f"got {schedule!r}"
        )
    sched = None if isinstance(schedule, Constant) else schedule.build(opt, max(int(total_steps()), 1))
    if sched is None:
        return opt
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
