"""Each task's main config, trained once more after a refactor: does it reproduce its benchmark figure?

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/reproduce.py              # every task, one process each
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/reproduce.py pos jsb      # some of them
    python benchmarks/reproduce.py --table

The figure before is read from the task's own result JSON; the run after goes to results/reproduce.json (keyed by
task, with the commit it ran on). A difference within run-to-run noise (seeds, thread scheduling) is a reproduction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, fit_and_test, main, write  # noqa: E402


def _get(path: str):
    """``file.json:key.key.0.key`` -> the value in results/."""
    name, _, keys = path.partition(":")
    value = json.loads((RESULTS / name).read_text())
    for key in keys.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


# task -> (config, extra arguments, metric logged by `test`, where the benchmark figure is, lower is better)
TASKS = {
    "imdb": ("configs/imdb_lstm.yaml", [], "test/acc", "imdb_lstm.json:test_acc", False),
    "names_language": (
        "configs/names_lstm.yaml",
        [],
        "test/acc",
        "names_language.json:names_lstm.runs.0.test_acc",
        False,
    ),
    "namesex_fold0": (
        "configs/namesex_bigru.yaml",
        ["--data.init_args.test_fold=0"],
        "test/acc",
        "names_gender.json:bigru_10fold.folds.0.test_acc",
        False,
    ),
    "pos": ("configs/conll2000_pos_bilstm.yaml", [], "test/acc", "tagging_conll2000_pos_bilstm.json:test.acc", False),
    "cws": ("configs/sinica_cws_bilstm.yaml", [], "test/f1", "tagging_sinica_cws_bilstm.json:test.f1", False),
    "charlm_names": (
        "configs/names_generate_gru.yaml",
        [],
        "test/loss",
        "charlm_names_generate_gru.json:test_loss_nats",
        True,
    ),
    "jsb": (
        "configs/jsb_chorales_gru.yaml",
        ["--model.init_args.rnn.cell=gru"],
        "test/nll",
        "music_jsb_gru.json:test_nll",
        True,
    ),
    "macro": ("configs/macro_var_gru.yaml", [], "test/rmse_h1", "timeseries.json:runs.gru.test.rmse_h1", True),
    "cmn_zh_en": (
        "configs/cmn_eng_seq2seq_attn.yaml",
        [],
        "test/bleu",
        "translation_cmn_eng_zh_en_attn.json:tests.held-out 10%.beam5.bleu",
        False,
    ),
}


def run_one(task: str) -> dict:
    config, extra, metric, before_at, lower = TASKS[task]
    run = fit_and_test(config, extra, name=f"reproduce_{task}")
    commit = (
        os.environ.get("RNNLAB_COMMIT")
        or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    )  # (RNNLAB_COMMIT: a run from an exported tree, which has no .git)
    row = {
        "config": config,
        "extra": extra,
        "metric": metric,
        "before": _get(before_at),
        "before_from": before_at,
        "after": run.test[metric],
        "lower_is_better": lower,
        "fit_seconds": run.fit_seconds,
        "commit": commit.strip(),
    }
    path = RESULTS / "reproduce.json"
    rows = json.loads(path.read_text()).get("tasks", {}) if path.is_file() else {}
    rows[task] = row
    write(
        "reproduce",
        {"command": "python benchmarks/reproduce.py", "benchmark": "python benchmarks/reproduce.py", "tasks": rows},
    )
    return row


def table() -> str:
    path = RESULTS / "reproduce.json"
    rows = json.loads(path.read_text())["tasks"] if path.is_file() else {}
    out = [
        "| task | config | metric | benchmark figure | this run | difference | commit | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, r in rows.items():
        out.append(
            f"| {task} | `{r['config']}` {' '.join(r['extra'])} | {r['metric']} | {r['before']:.4f} | "
            f"{r['after']:.4f} | {r['after'] - r['before']:+.4f} | {r['commit']} | {r.get('note', '')} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main(__file__, run_one, table, [t for t in TASKS if t != "cmn_zh_en"])
