"""Helpers shared by the benchmark scripts: machine facts, JSON results, one training run, the command line."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("RNNLAB_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.logger.init_args.save_dir=runs/bench",
]


def cpu_info() -> dict:
    """The CPU model and the flags that decide kernel speed (AVX-512, bf16, AMX): speeds compare only on one CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
    return {"cpu_model": model, "cpu_flags": [f for f in wanted if f in flags]}


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        **cpu_info(),
        "date": time.strftime("%Y-%m-%d"),
    }


def write(name: str, result: dict) -> Path:
    """``results/<name>.json``: ``result`` with the machine it ran on. The file's ``readme`` block (the README row:
    label, config, which figures, the published figure; see readme_tables.tasks_table) is data of the result, kept
    when a run rewrites the figures."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    if path.is_file() and "readme" not in result:
        kept = json.loads(path.read_text()).get("readme")
        result = {**result, "readme": kept} if kept else result
    result = {**result, "benchmark": result.get("benchmark") or benchmark_command()}
    path.write_text(json.dumps({**result, "machine": machine()}, indent=2, default=str, ensure_ascii=False) + "\n")
    print(f"wrote {path}")
    return path


def benchmark_command() -> str:
    """The command that reruns the benchmark this process runs (``benchmarks/run.py NAME`` reads it back): the
    script and its arguments, with ``--one NAME`` (a child process of the script's own loop) written as ``NAME``."""
    argv = [a for a in sys.argv[1:] if a != "--one"]
    return " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *argv])


def previous(name: str, keys: Iterable[str], protocol: str) -> dict:
    """The figures ``keys`` of ``results/<name>.json`` as it was before this run re-measures it on a new protocol
    (``protocol`` names the old one), to keep beside the new ones: ``{}`` if there is none or it is already new."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    if "previous" in old or "protocol" in old:  # already measured on the new protocol: keep its own previous
        return old.get("previous", {})
    return {"protocol": protocol, **{k: old[k] for k in keys if k in old}, "date": old.get("machine", {}).get("date")}


def load(pattern: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


@dataclass
class Run:
    """One ``fit`` + ``test`` (best checkpoint) through the CLI, as a user would run it."""

    cli: Any
    test: dict
    fit_seconds: float
    epochs: list[dict] = field(default_factory=list)  # ThroughputMonitor's figures per training epoch
    best_score: float | None = None

    @property
    def tokens_per_s(self) -> int:
        return round(sum(e["tokens_per_s"] for e in self.epochs) / max(len(self.epochs), 1))


def build_cli(args: list[str]):
    """The CLI (``run=False``) of ``args`` alone. The script's own ``sys.argv`` is hidden from it while it parses
    and put back after, so the result's ``benchmark`` command and DDP's launcher (which re-runs the script) see it."""
    from rnnlab.cli import RnnlabCLI

    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return RnnlabCLI(args=args, run=False)
    finally:
        sys.argv = argv


def fit_and_test(config: str, extra: Iterable[str] = (), name: str | None = None, test: bool = True) -> Run:
    """Train ``config`` (with ``extra`` CLI arguments; ``name``: the run's logger name), test its best checkpoint
    (``test=False``: leave the test set unread). ``RNNLAB_BENCH_ARGS`` adds arguments to every run (e.g.
    ``--trainer.max_epochs=1`` for a smoke test)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from rnnlab.callbacks import ThroughputMonitor

    args = [
        "--config",
        config,
        *QUIET,
        *([f"--trainer.logger.init_args.name={name}"] if name else []),
        *extra,
        *os.environ.get("RNNLAB_BENCH_ARGS", "").split(),
    ]
    cli = build_cli(args)
    epochs: list[dict] = []

    class Record(ThroughputMonitor):  # keep every epoch's throughput, not just the last
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            epochs.append(dict(self.last))

    callbacks = cli.trainer.callbacks
    tput = next((c for c in callbacks if isinstance(c, ThroughputMonitor)), None)
    if tput is not None:
        callbacks[callbacks.index(tput)] = Record()
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - start
    ckpt = next(c for c in callbacks if isinstance(c, ModelCheckpoint))
    scores = test_best(cli, datamodule=cli.datamodule) if test else {}
    best = float(ckpt.best_model_score) if ckpt.best_model_score is not None else None
    return Run(cli, {k: float(v) for k, v in scores.items()}, round(fit_seconds, 1), epochs, best)


def choose_on_validation(
    candidates: dict[str, tuple[str, list[str]]],
    seeds: Iterable[int] = (42,),
    mode: str = "max",
    name: str | None = None,
) -> tuple[dict, Run]:
    """Fit every candidate (label -> config, extra arguments) with every seed without reading the test set, pick the
    one with the best mean best-validation score (``mode``), then test only the chosen one's first-seed checkpoint.
    Returns the record of the choice (every score, the chosen label) and the chosen, tested run."""
    import gc
    import statistics

    seeds, record, first = list(seeds), {}, {}
    for label, (config, extra) in candidates.items():
        scores = {}
        for seed in seeds:
            run = fit_and_test(config, [*extra, f"--seed_everything={seed}"], name=name, test=False)
            scores[seed] = run.best_score
            print(f"{label} seed {seed}: best validation {run.best_score:.4f} ({run.fit_seconds} s)", flush=True)
            if seed == seeds[0]:
                first[label] = run
            else:
                del run
                gc.collect()
        record[label] = {
            "config": config,
            "extra": extra,
            "val_by_seed": scores,
            "val_mean": statistics.mean(scores.values()),
            "fit_seconds": first[label].fit_seconds,
        }
    pick = (max if mode == "max" else min)(record, key=lambda k: record[k]["val_mean"])
    chosen = first[pick]
    chosen.test = {k: float(v) for k, v in test_best(chosen.cli, datamodule=chosen.cli.datamodule).items()}
    return {
        "candidates": record,
        "chosen": pick,
        "seeds": seeds,
        "mode": mode,
        "protocol": "chosen on the mean best validation score over the seeds; the test set read once, for the "
        f"chosen candidate's seed-{seeds[0]} checkpoint",
    }, chosen


def test_best(cli, **loaders) -> dict:
    """``trainer.test`` of the best checkpoint of the run ``cli`` has just fitted (``loaders``: ``datamodule=`` or
    ``dataloaders=``). With Lightning's WeightAveraging (EMA) callback the checkpoint holds the averaged weights, but
    a ``test(ckpt_path="best")`` in the process that trained restores the raw ones: load the averaged ones here."""
    from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging

    callbacks = cli.trainer.callbacks
    if not any(isinstance(c, WeightAveraging) for c in callbacks):
        return cli.trainer.test(cli.model, ckpt_path="best", verbose=False, **loaders)[0]
    best = next(c for c in callbacks if isinstance(c, ModelCheckpoint)).best_model_path
    cli.model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    return cli.trainer.test(cli.model, verbose=False, **loaders)[0]


def main(script: str, run_one: Callable[[str], dict], table: Callable[[], str], names: list[str]) -> None:
    """``script NAME...`` runs each in its own process (clean timings) and prints the table; ``--one NAME`` runs one
    here; ``--table`` prints the table from the saved JSON."""
    argv = sys.argv[1:]
    if argv[:1] == ["--one"]:
        print(json.dumps(run_one(argv[1]), indent=2, default=str, ensure_ascii=False))
    elif argv[:1] == ["--table"]:
        print(table())
    else:
        for name in argv or names:
            subprocess.run([sys.executable, script, "--one", name], cwd=ROOT, check=True)
        print(table())
