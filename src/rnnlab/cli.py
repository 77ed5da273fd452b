"""``python main.py fit|validate|test|predict --config configs/X.yaml`` (also the ``rnnlab`` console script)."""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from rnnlab.callbacks import ConfusionMatrix, PredictionWriter, ThroughputMonitor, run_dir
from rnnlab.data.base import SequenceDataModule
from rnnlab.errors import RnnlabError
from rnnlab.models.base import RnnlabModule


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run's own folder (next to ``checkpoints/``, so a second
    run never collides with the first) and sends it to the logger (the W&B run config, ``hparams.yaml``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(folder / self.config_filename), skip_none=False, overwrite=True,
                         multifile=self.multifile)
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(self.config.as_dict())


class RnnlabCLI(LightningCLI):
    """LightningCLI with rnnlab's defaults: DataModule properties linked into the model, checkpointing and early
    stopping on ``val/acc`` (override with ``--checkpoint.monitor`` etc.), a prediction writer, a throughput monitor,
    and ``--ckpt_path`` also supplying the vocabulary (``data.vocab_from``) for validate/test/predict."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_callback", LoggerSaveConfigCallback)
        kwargs.setdefault("trainer_defaults", {
            "default_root_dir": "runs",
            "use_distributed_sampler": False,  # LengthBucketSampler shards by rank itself
            "callbacks": [LearningRateMonitor(logging_interval="epoch")],
        })
        kwargs.setdefault("auto_configure_optimizers", True)
        super().__init__(RnnlabModule, SequenceDataModule, *args, subclass_mode_model=True,
                         subclass_mode_data=True, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/acc", "checkpoint.mode": "max", "checkpoint.save_last": True,
            "checkpoint.filename": "epoch{epoch}-step{step}", "checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val/acc", "early_stopping.mode": "max",
                             "early_stopping.patience": 3})
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
        parser.add_lightning_class_args(ConfusionMatrix, "confusion_matrix")
        for prop in ("vocab_size", "num_classes", "pad_id"):
            parser.link_arguments(f"data.{prop}", f"model.init_args.{prop}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        ckpt = cfg.get("ckpt_path")
        init = cfg.data.init_args
        if ckpt and Path(str(ckpt)).is_file() and not init.get("vocab_from"):
            init.vocab_from = str(ckpt)


def main(args=None) -> None:
    try:
        RnnlabCLI(args=args)
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
