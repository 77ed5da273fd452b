"""benchmarks/: every result knows the command that reruns it, and the README's task table is data in the results."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_every_result_records_a_benchmark_command_of_this_folder():
    for path in sorted(RESULTS.glob("*.json")):
        command = shlex.split(json.loads(path.read_text())["benchmark"])
        assert command[0] == "python" and (ROOT / command[1]).is_file(), (path.name, command)


def test_the_task_table_is_built_from_the_results_readme_blocks(tmp_path, monkeypatch):
    import readme_tables

    table = readme_tables.tasks_table().splitlines()
    blocks = [json.loads(p.read_text()).get("readme") for p in RESULTS.glob("*.json")]
    blocks = [b for b in blocks if b]
    assert len(table) == 2 + len(blocks) >= 12
    assert all(line.count(" | ") == 4 for line in table[2:])
    assert table[2].startswith("| " + min(blocks, key=lambda b: b["order"])["task"] + " |")
    # a new result with a readme block is a new row, with its figure read by path
    (tmp_path / "new.json").write_text(
        json.dumps(
            {
                "config": "configs/x.yaml",
                "test": {"acc": 0.5},
                "fit_seconds": 120,
                "readme": {
                    "order": 1,
                    "task": "a new task",
                    "config": ["config"],
                    "reached": {"text": "{0:.1f}% acc", "values": [{"path": ["test", "acc"], "scale": 100}]},
                    "published": "-",
                    "fit_seconds": [["fit_seconds"]],
                },
            }
        )
    )
    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    assert readme_tables.tasks_table().splitlines()[2] == "| a new task | `configs/x.yaml` | 50.0% acc | - | 2 min |"


def test_the_runner_lists_results_and_refuses_an_unknown_one():
    run = [sys.executable, str(ROOT / "benchmarks" / "run.py")]
    listing = subprocess.run([*run, "--list"], capture_output=True, text=True, check=True).stdout
    assert "imdb_lstm" in listing and "python benchmarks/imdb.py" in listing
    bad = subprocess.run([*run, "no_such_result"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no result named no_such_result" in bad.stderr


def test_the_gpu_benchmark_runs_every_path_on_the_cpu_in_smoke_mode(env):
    """benchmarks/gpu.py cannot be measured here (no GPU): its --smoke mode runs the same code on the CPU --
    packed and padded, fp32 and bf16 autocast, one and two DDP processes (gloo)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("packed cuDNN, fp32", "packed cuDNN, bf16 autocast", "padded driver, fp32", "padded driver, bf16"):
        assert name in out.stdout
    ddp = json.loads(out.stdout[out.stdout.index("{") :])
    assert ddp["1"]["processes"] == 1 and len(ddp["2"]["ranks"]) == 2 and ddp["2"]["tokens_per_s"] > 0
    none = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py")], capture_output=True, text=True)
    assert "no CUDA device here: nothing measured" in none.stdout and not (RESULTS / "gpu_imdb_bilstm.json").exists()


def test_the_speed_benchmark_profiles_and_times_both_precisions(env, tmp_path):
    """benchmarks/speed.py on the fixture data: the step profile's parts are shares of the wall time, the
    recurrent layers and the optimizer among them; fp32 and bf16-mixed both timed, with FLOPs counted."""
    out = tmp_path / "results"
    run = [sys.executable, str(ROOT / "benchmarks" / "speed.py")]
    small = ["--tasks", "jsb", "--warmup", "2", "--steps", "3"]
    environ = {**os.environ, "RNNLAB_BENCH_RESULTS": str(out)}
    for what, extra in (("profile", []), ("precision", ["--rounds", "1"])):
        res = subprocess.run([*run, what, *small, *extra], capture_output=True, text=True, env=environ, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    share = json.loads((out / "speed_profile.json").read_text())["tasks"]["jsb"]["share"]
    assert share["recurrent layers"] > 0 and share["optimizer"] > 0 and min(share.values()) >= 0
    assert sum(share.values()) == pytest.approx(1, abs=0.25)
    jsb = json.loads((out / "speed_precision.json").read_text())["tasks"]["jsb"]
    assert jsb["flops_per_position"] > 0 and jsb["fp32"]["tokens_per_s"] > 0 and jsb["bf16"]["tokens_per_s"] > 0
    assert jsb["fp32"]["steps_per_s"] > 0 and "bf16_speedup" in jsb
