"""Where a run's files go."""

from __future__ import annotations

from pathlib import Path


def run_dir(trainer) -> Path:
    """The folder of this run, where ModelCheckpoint puts ``checkpoints/``: ``<save_dir>/<name>/<version>``."""
    logger = trainer.logger
    if logger is None or logger.save_dir is None:
        return Path(trainer.default_root_dir)
    version = logger.version
    return Path(logger.save_dir, str(logger.name), version if isinstance(version, str) else f"version_{version}")
