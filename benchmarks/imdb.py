"""IMDB benchmark: train each config on the real data, test the best checkpoint, write JSON and print a table.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/imdb.py                      # all three configs
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/imdb.py configs/imdb_gru.yaml
    python benchmarks/imdb.py --table                                               # table from results/imdb_*.json

Each config runs in its own process (clean timings). Results: benchmarks/results/imdb_<config>.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["configs/imdb_lstm.yaml", "configs/imdb_gru.yaml", "configs/imdb_rnn.yaml"]


def run_one(config: str, extra: list[str]) -> dict:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from rnnlab.callbacks import ThroughputMonitor
    from rnnlab.cli import RnnlabCLI

    sys.argv = sys.argv[:1]  # the CLI gets its arguments from `args` only

    name = Path(config).stem
    args = ["--config", config, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir=runs/bench", *extra]
    start = time.perf_counter()
    cli = RnnlabCLI(args=args, run=False)
    tput = next(c for c in cli.trainer.callbacks if isinstance(c, ThroughputMonitor))
    epochs: list[dict] = []

    class Record(ThroughputMonitor):  # keep every epoch's throughput, not just the last
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            epochs.append(dict(self.last))

    cli.trainer.callbacks[cli.trainer.callbacks.index(tput)] = Record()
    fit_start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - fit_start
    ckpt = next(c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint))
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
    total = time.perf_counter() - start
    train_tokens_s = sum(e["tokens_per_s"] for e in epochs) / len(epochs)
    result = {
        "config": config, "command": f"python benchmarks/imdb.py {config}",
        "test_acc": test["test/acc"], "test_f1": test["test/f1"], "best_val_acc": float(ckpt.best_model_score),
        "epochs": len(epochs), "fit_seconds": round(fit_seconds, 1), "total_seconds": round(total, 1),
        "train_tokens_per_s": round(train_tokens_s), "padding": round(sum(e["padding"] for e in epochs) / len(epochs), 4),
        "epoch_seconds": [round(e["epoch_seconds"], 1) for e in epochs],
        "model": {k: v for k, v in cli.model.hparams.items()},
    }
    write(f"imdb_{name.removeprefix('imdb_')}", result)
    return result


def table() -> str:
    rows = ["| config | model | test acc | test F1 | best val acc | epochs | fit wall time | train tokens/s | padding |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in load("imdb_*.json"):
        m = r["model"]
        model = f"{'Bi' if m['bidirectional'] else ''}{m['cell'].upper()} {m['hidden_size']} ({m['impl']}), {m['pooling']} pool"
        rows.append(f"| `{r['config']}` | {model} | {100 * r['test_acc']:.2f}% | {100 * r['test_f1']:.2f}% | "
                    f"{100 * r['best_val_acc']:.2f}% | {r['epochs']} | {r['fit_seconds'] / 60:.1f} min | "
                    f"{r['train_tokens_per_s']:,} | {100 * r['padding']:.1f}% |")
    return "\n".join(rows)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--one"]:
        print(json.dumps(run_one(argv[1], argv[2:]), indent=2))
    elif argv[:1] == ["--table"]:
        print(table())
    else:
        configs = [a for a in argv if a.endswith(".yaml")] or DEFAULT
        extra = [a for a in argv if not a.endswith(".yaml")]
        for config in configs:
            subprocess.run([sys.executable, __file__, "--one", config, *extra], cwd=ROOT, check=True)
        print(table())
