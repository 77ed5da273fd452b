"""The first lines of a run say what is trained on what data, and where its files go."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from rnnlab.runs import run_dir


def describe_run(trainer, pl_module, stage: str) -> str:
    dm = trainer.datamodule
    params = sum(p.numel() for p in pl_module.parameters())
    text = f"rnnlab {stage}: {type(pl_module).__name__} ({params:,} parameters)"
    if dm is not None:
        sizes = ", ".join(
            f"{split} {len(ds):,}" for split, ds in getattr(dm, "datasets", {}).items() if hasattr(ds, "__len__")
        )
        labels = len(pl_module.task.labels) if hasattr(pl_module, "task") else 0
        text += f" on {type(dm).__name__}" + (f" ({sizes})" if sizes else "") + (f", {labels} labels" if labels else "")
    return text + f"; run folder {run_dir(trainer)}"


class RunSummary(L.Callback):
    """One line at the start of ``fit``/``validate``/``test``: the model and its size, the data and its splits, the
    run folder."""

    def on_fit_start(self, trainer, pl_module) -> None:
        rank_zero_info(describe_run(trainer, pl_module, "fit"))

    def on_test_start(self, trainer, pl_module) -> None:
        rank_zero_info(describe_run(trainer, pl_module, "test"))
