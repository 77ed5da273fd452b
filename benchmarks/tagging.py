"""Tagging benchmarks: CoNLL-2000 POS (with and without a CRF) and Sinica word segmentation (with and without).

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/tagging.py             # every run below, one process each
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/tagging.py sinica_cws_bilstm_nocrf
    python benchmarks/tagging.py --table                                     # table from results/tagging_*.json

Each run trains on the real data, tests the best checkpoint, and writes benchmarks/results/tagging_<run>.json.
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
RUNS = {  # name: (config, extra CLI arguments)
    "conll2000_pos_bilstm": ("configs/conll2000_pos_bilstm.yaml", []),
    "conll2000_pos_bilstm_crf": ("configs/conll2000_pos_bilstm_crf.yaml", []),
    "sinica_cws_bilstm": ("configs/sinica_cws_bilstm.yaml", []),
    "sinica_cws_bilstm_nocrf": ("configs/sinica_cws_bilstm.yaml", ["--model.init_args.crf=false"]),
}


def run_one(name: str) -> dict:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from rnnlab.callbacks import ThroughputMonitor
    from rnnlab.cli import RnnlabCLI

    config, extra = RUNS[name]
    sys.argv = sys.argv[:1]
    args = ["--config", config, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.logger.init_args.save_dir=runs/bench", f"--trainer.logger.init_args.name={name}", *extra]
    cli = RnnlabCLI(args=args, run=False)
    epochs: list[dict] = []
    tput = next(c for c in cli.trainer.callbacks if isinstance(c, ThroughputMonitor))

    class Record(ThroughputMonitor):
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            epochs.append(dict(self.last))

    cli.trainer.callbacks[cli.trainer.callbacks.index(tput)] = Record()
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - start
    ckpt = next(c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint))
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
    result = {
        "run": name, "config": config, "extra": extra,
        "command": f"python main.py fit --config {config} {' '.join(extra)}".strip(),
        "test": {k.removeprefix("test/"): round(float(v), 5) for k, v in test.items()},
        "best_val": round(float(ckpt.best_model_score), 5), "monitor": ckpt.monitor,
        "epochs": len(epochs), "fit_seconds": round(fit_seconds, 1),
        "train_units_per_s": round(sum(e["tokens_per_s"] for e in epochs) / len(epochs)),
        "model": dict(cli.model.hparams),
    }
    write(f"tagging_{name}", result)
    return result


def table() -> str:
    rows = ["| run | task | model | test acc | test acc (unseen words) | test F1 | OOV recall | epochs | fit time |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in load("tagging_*.json"):
        m, t = r["model"], r["test"]
        model = (f"Bi{m['cell'].upper()} {m['hidden_size']}" + (f" + char {m['char_encoder']}" if m["char_encoder"] !=
                 "none" else "") + (f" + {m['unit_features'] - 1} bigrams" if m["unit_features"] > 1 else "")
                 + (" + CRF" if m["crf"] else ""))
        task = "POS" if "pos" in r["run"] else "segmentation"
        f1 = f"{100 * t['f1']:.2f}" if "f1" in t else "-"
        oov = f"{100 * t['oov_recall']:.2f}%" if "oov_recall" in t else "-"
        rows.append(f"| `{r['command'].removeprefix('python main.py fit --config ')}` | {task} | {model} | "
                    f"{100 * t['acc']:.2f}% | {100 * t['acc_oov']:.2f}% | {f1} | {oov} | {r['epochs']} | "
                    f"{r['fit_seconds'] / 60:.1f} min |")
    return "\n".join(rows)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--one"]:
        print(json.dumps(run_one(argv[1]), indent=2, default=str))
    elif argv[:1] == ["--table"]:
        print(table())
    else:
        for name in argv or list(RUNS):
            subprocess.run([sys.executable, __file__, "--one", name], cwd=ROOT, check=True)
        print(table())
