"""Time to accuracy: the wall time of ``fit`` for a task's fast recipe to reach its target, against the task's
current main config, one after the other in one run (same machine, same load):

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/time_to_accuracy.py imdb
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/time_to_accuracy.py jsb
    python benchmarks/time_to_accuracy.py --table

Each config trains its whole schedule (no early stop at the target: the schedule is the recipe), then its best
checkpoint (chosen on validation) is tested once. A recipe meets its target when its test figure reaches the target
and its fit time is within the budget. Writes ``results/time_to_accuracy_<task>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, fit_and_test, machine, write  # noqa: E402

# task -> what to reach, within what time, with which recipe, against which current config
TARGETS = {
    "imdb": {
        "label": "IMDB sentiment",
        "metric": "test/acc",
        "target": 0.90,
        "budget_seconds": 240,
        "lower_is_better": False,
        "current": ("configs/imdb_lstm.yaml", []),
        "fast": ("configs/imdb_lstm_fast.yaml", []),
        "text": "{0:.2f}% acc",
        "scale": 100,
        "order": 55,  # the README's task table: after the IMDB rows
    },
    "jsb": {
        "label": "JSB Chorales",
        "metric": "test/nll",
        "target": 8.0,
        "budget_seconds": 180,
        "lower_is_better": True,
        "current": ("configs/jsb_chorales_gru.yaml", ["--model.init_args.rnn.cell=gru"]),
        "fast": ("configs/jsb_chorales_fast.yaml", []),
        "text": "{0:.2f} nats/step",
        "scale": 1,
        "order": 145,  # after the JSB row
    },
}


def reached(value: float, spec: dict) -> bool:
    return value <= spec["target"] if spec["lower_is_better"] else value >= spec["target"]


def run(task: str) -> dict:
    spec = TARGETS[task]
    rows = {}
    for which in ("current", "fast"):
        config, extra = spec[which]
        r = fit_and_test(config, extra, name=f"tta_{task}_{which}")
        value = r.test[spec["metric"]]
        rows[which] = {
            "config": config,
            "extra": extra,
            "fit_seconds": r.fit_seconds,
            "epochs": len(r.epochs),
            "tokens_per_s": r.tokens_per_s,
            "test": value,
            "reaches_target": reached(value, spec),
            "within_budget": r.fit_seconds <= spec["budget_seconds"],
        }
        print(f"{task} {which:8} {config}: {spec['metric']} {value:.4f} in {r.fit_seconds:.0f} s", flush=True)
    fast = rows["fast"]
    result = {
        "task": task,
        "metric": spec["metric"],
        "target": spec["target"],
        "budget_seconds": spec["budget_seconds"],
        "runs": rows,
        "met": fast["reaches_target"] and fast["within_budget"],
        "speedup_vs_current": round(rows["current"]["fit_seconds"] / fast["fit_seconds"], 2),
        "command": f"python benchmarks/time_to_accuracy.py {task}",
        "benchmark": f"python benchmarks/time_to_accuracy.py {task}",  # one file per task: its own rerun
        "protocol": "each config's whole schedule, its best validation checkpoint tested once; fit wall time",
        "machine": machine(),
        "readme": {
            "order": spec["order"],
            "task": f"{spec['label']}, time to {spec['target']:g} ({spec['budget_seconds'] // 60} min budget)",
            "config": ["runs", "fast", "config"],
            "reached": {"text": spec["text"], "values": [{"path": ["runs", "fast", "test"], "scale": spec["scale"]}]},
            "published": f"current config: {rows['current']['test'] * spec['scale']:.2f} in "
            f"{rows['current']['fit_seconds'] / 60:.1f} min, same run",
            "fit_seconds": [["runs", "fast", "fit_seconds"]],
        },
    }
    write(f"time_to_accuracy_{task}", result)
    return result


def table() -> str:
    out = [
        "| task | target | budget | fast recipe | test | fit time | current config | test | fit time | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("time_to_accuracy_*.json")):
        r = json.loads(path.read_text())
        f, c = r["runs"]["fast"], r["runs"]["current"]
        out.append(
            f"| {r['task']} | {r['target']:g} | {r['budget_seconds'] / 60:.0f} min | `{f['config']}` | {f['test']:.4f} | "
            f"{f['fit_seconds'] / 60:.1f} min | `{c['config']}` | {c['test']:.4f} | {c['fit_seconds'] / 60:.1f} min | "
            f"{'yes' if r['met'] else 'no'} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        print(table())
    else:
        for name in sys.argv[1:] or list(TARGETS):
            if name not in TARGETS:
                raise SystemExit(f"unknown task {name!r}; one of {sorted(TARGETS)}")
            run(name)
        print(table())
