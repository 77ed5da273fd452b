"""A W&B logger that never hangs or fails for want of an API key or a network: it goes offline and says so."""

from __future__ import annotations

import netrc
import os
import socket
from typing import Optional

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

from rnnlab.errors import require


def offline_reason(host: str = "api.wandb.ai", timeout: float = 3.0) -> Optional[str]:
    """Why W&B cannot log online here (None if it can)."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc.netrc().authenticators(host) is not None
        except (OSError, netrc.NetrcParseError):
            has_key = False
    if not has_key:
        return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return f"{host} is unreachable"
    return None


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` (config, metrics, best checkpoint as an artifact) with an offline fallback.

    Without an API key or network it logs offline under ``<save_dir>/wandb`` with a one-line notice (upload later
    with ``wandb sync``); checkpoints are then logged as an offline artifact at the end of the run.

    Checkpoints go to ``<save_dir>/<name>/<run id>/checkpoints`` (``name``: the experiment's, which the configs set
    for the CSV logger and a logger preset keeps), so ``--ckpt_path last`` finds them as it finds the CSV logger's.
    Every checkpoint carries the run id; ``fit --ckpt_path <checkpoint>`` continues that W&B run (``id`` unless given).
    """

    def __init__(
        self,
        project: str = "rnnlab",
        name: Optional[str] = None,
        save_dir: str = "runs",
        log_model: bool = True,
        offline: bool = False,
        **kwargs,
    ) -> None:
        require("wandb", "wandb", "the W&B logger")
        if not offline and (reason := offline_reason()):
            print(f"wandb: logging offline ({reason}); sync later with `wandb sync {save_dir}/wandb/offline-run-*`")
            offline = True
        os.makedirs(save_dir, exist_ok=True)
        self._experiment_name = name
        self._offline_log_model = offline and bool(log_model)
        self._checkpoint_callback = None
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            offline=offline,
            log_model=False if offline else log_model,
            **kwargs,
        )

    @property
    def name(self) -> Optional[str]:
        """The folder under ``save_dir`` for checkpoints: the experiment's name (Lightning's: the W&B project)."""
        return self._experiment_name or self._project

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self._checkpoint_callback = checkpoint_callback
        super().after_save_checkpoint(checkpoint_callback)

    def finalize(self, status: str) -> None:
        cb = self._checkpoint_callback
        if self._offline_log_model and status == "success" and cb is not None and cb.best_model_path:
            wandb = require("wandb", "wandb", "the W&B logger")

            artifact = wandb.Artifact(
                f"model-{self.experiment.id}",
                type="model",
                metadata={
                    "score": float(cb.best_model_score) if cb.best_model_score is not None else None,
                    "monitor": cb.monitor,
                },
            )
            artifact.add_file(cb.best_model_path, name="model.ckpt")
            self.experiment.log_artifact(artifact, aliases=["best", "latest"])
        super().finalize(status)
