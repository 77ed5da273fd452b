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
from common import fit_and_test, load, previous, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["configs/imdb_lstm.yaml", "configs/imdb_gru.yaml", "configs/imdb_rnn.yaml"]


def run_one(config: str, extra: list[str]) -> dict:
    name = Path(config).stem
    start = time.perf_counter()
    run = fit_and_test(config, extra)
    total = time.perf_counter() - start
    result = {
        "config": config,
        "command": f"python benchmarks/imdb.py {config}",
        "test_acc": run.test["test/acc"],
        "test_f1": run.test["test/f1"],
        "best_val_acc": run.best_score,
        "epochs": len(run.epochs),
        "fit_seconds": run.fit_seconds,
        "total_seconds": round(total, 1),
        "train_tokens_per_s": run.tokens_per_s,
        "padding": round(sum(e["padding"] for e in run.epochs) / len(run.epochs), 4),
        "epoch_seconds": [round(e["epoch_seconds"], 1) for e in run.epochs],
        "model": dict(run.cli.model.hparams),
        "val_split": run.cli.datamodule.val_split,
        "protocol": (
            "validation: whole movies held out of the official train set (no movie on both sides, as "
            "between train and test)"
            if run.cli.datamodule.val_split == "movie"
            else "validation: a random stratified 2,500 of the official train set"
        ),
    }
    result["previous"] = previous(
        f"imdb_{name.removeprefix('imdb_')}",
        ("test_acc", "best_val_acc", "epochs"),
        "validation: a random stratified 2,500 of the official train set (shares movies with training)",
    )
    write(f"imdb_{name.removeprefix('imdb_')}", result)
    return result


def table() -> str:
    rows = [
        "| config | model | test acc | test F1 | best val acc (validation split) | epochs | fit wall time | "
        "train tokens/s | padding |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in load("imdb_*.json") if "padding" in r):  # the classifier rows (not imdb_lm_*, nbsvm)
        m = r["model"]
        model = f"{'Bi' if m['bidirectional'] else ''}{m['cell'].upper()} {m['hidden_size']} ({m['impl']}), {m['pooling']} pool"
        rows.append(
            f"| `{r['config']}` | {model} | {100 * r['test_acc']:.2f}% | {100 * r['test_f1']:.2f}% | "
            f"{100 * r['best_val_acc']:.2f}% ({'by movie' if r.get('val_split') == 'movie' else 'random'}) | "
            f"{r['epochs']} | {r['fit_seconds'] / 60:.1f} min | "
            f"{r['train_tokens_per_s']:,} | {100 * r['padding']:.1f}% |"
        )
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
