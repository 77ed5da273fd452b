"""Two-process DDP on the CPU (gloo): each training sample is seen exactly once per epoch across the ranks, both
ranks get the same number of batches, and the synced validation metrics equal a one-process evaluation of the
same checkpoint. For the many-to-one classifier, the many-to-many tagger and the encoder-decoder (BLEU)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.callbacks import Callback

from rnnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--model.init_args.rnn.hidden_size=16",
    "--model.init_args.embedding_dim=16",
]
TASKS = {
    "imdb_lstm": (
        "val/acc",
        ["--data.init_args.val_size=20", "--data.init_args.batch_size=7", "--data.init_args.max_length=64"],
    ),
    "conll2000_pos_bilstm": ("val/acc", ["--data.init_args.batch_size=9"]),
    # BLEU over the whole validation split: every rank's translations gathered before scoring
    "cmn_eng_seq2seq_attn": (
        "val/bleu",
        [
            "--data.init_args.batch_size=8",
            "--data.init_args.min_freq=1",
            "--model.init_args.rnn.hidden_size=32",
            "--model.init_args.dropout=0.0",
            "--model.init_args.optimizer.init_args.lr=0.01",
        ],
    ),
}


class RecordBatches(Callback):
    """Appends ``{"epoch", "rank", "index"}`` of every training batch to ``<folder>/batches-<rank>.jsonl``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(os.path.join(self.folder, f"batches-{trainer.global_rank}.jsonl"), "a") as f:
            f.write(
                json.dumps({"epoch": trainer.current_epoch, "rank": trainer.global_rank, "index": batch.index.tolist()})
                + "\n"
            )


@pytest.mark.parametrize("config", list(TASKS))
def test_two_process_ddp_sees_every_sample_once_and_validates_like_one_process(env, config, capsys):
    metric, args = TASKS[config]
    path = str(ROOT / "configs" / f"{config}.yaml")
    main(
        [
            "fit",
            "--config",
            path,
            *QUIET,
            *args,
            "--trainer.strategy=ddp_spawn",
            "--trainer.devices=2",
            "--trainer.accelerator=cpu",
            "--trainer.max_epochs=2",
            "--early_stopping.patience=5",
            "--trainer.callbacks+=test_ddp.RecordBatches",
            f"--trainer.callbacks.folder={env}",
        ]
    )
    rows = [json.loads(line) for rank in (0, 1) for line in (env / f"batches-{rank}.jsonl").read_text().splitlines()]
    from rnnlab.cli import RnnlabCLI

    cli = RnnlabCLI(args=["--config", path, *QUIET, *args], run=False)
    cli.datamodule.setup("fit")
    n_train = len(cli.datamodule.dataset("train"))
    for epoch in (0, 1):
        seen = [i for r in rows if r["epoch"] == epoch for i in r["index"]]
        assert sorted(seen) == list(range(n_train)), f"epoch {epoch}: every training sample exactly once"
        counts = [sum(1 for r in rows if r["epoch"] == epoch and r["rank"] == k) for k in (0, 1)]
        assert counts[0] == counts[1] > 0, f"equal batch counts per rank (unequal counts hang DDP): {counts}"
    order = [[r["index"] for r in rows if r["epoch"] == e and r["rank"] == 0] for e in (0, 1)]
    assert order[0] != order[1], "a new shuffle every epoch"

    run = env / "runs" / config / "version_0"
    logged = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get(metric)]
    ddp_value = float(logged[-1][metric])
    assert ddp_value > 0, f"{metric} is 0: the comparison below would prove nothing"
    capsys.readouterr()
    main(
        [
            "validate",
            "--config",
            path,
            *QUIET,
            *args,
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
            "--trainer.devices=1",
        ]
    )
    single = _last_printed_metric(capsys.readouterr().out, metric)
    assert single == pytest.approx(ddp_value, abs=1e-6), (single, ddp_value)


def _last_printed_metric(out: str, metric: str) -> float:
    """The value of ``metric`` in the table Lightning prints after ``validate``."""
    for line in reversed(out.splitlines()):
        cells = [c.strip() for c in line.replace("│", "|").split("|") if c.strip()]
        if len(cells) == 2 and cells[0] == metric:
            return float(cells[1])
    raise AssertionError(f"{metric} not printed by validate:\n{out[-2000:]}")


def test_lightning_sets_the_bucket_samplers_epoch(env):
    """Lightning calls set_epoch on ``batch_sampler.sampler`` only: without that every epoch had the same order."""
    from rnnlab.data.imdb import IMDBDataModule

    dm = IMDBDataModule(val_size=20, batch_size=8)
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = list(loader)
    _set_sampler_epoch(loader, 1)
    assert loader.batch_sampler.epoch == 1
    assert [b.index.tolist() for b in loader] != [b.index.tolist() for b in first]
