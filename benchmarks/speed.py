"""Where training time goes on this CPU, and what bf16 does to it, for every task's main config, one run each:

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/speed.py precision   # fp32 vs bf16-mixed: tokens/s, GFLOP/s
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/speed.py profile     # share of time by part of the step
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/speed.py ddp         # 2 DDP processes vs 1, same total batch
    python benchmarks/speed.py precision --tasks imdb jsb --steps 40        # some tasks, other window
    python benchmarks/speed.py --table

Every measurement trains the task's config (``benchmarks/reproduce.py``'s list: the same configs the README's figures
come from) through the CLI's own Trainer for ``--warmup`` + ``--steps`` optimizer steps, validation off, and times
the ``--steps`` after the warm-up (data loading included: wall time from the first timed batch to the last).

* ``precision``: fp32 and ``bf16-mixed`` alternated ``--rounds`` times (drift of the machine hits both alike), plus
  the machine's GEMM peak (a 2048^3 matmul, fp32 and bf16) measured in the same run. Achieved GFLOP/s counts the
  step's FLOPs with ``torch.utils.flop_counter`` on one warm-up step run with the handwritten cells (whose matmuls
  the counter sees; torch's fused RNN kernels are opaque to it), per padded position, times the timed steps' padded
  positions: an estimate, the matmuls of the padded batch (what the hardware computes), not of the real tokens.
* ``profile``: ``torch.profiler`` over the timed steps; each operator's own time goes to the nearest of its
  enclosing parts that is named: the recurrent layers (forward inside a ``Recurrent``, and the backward operators
  autograd links to them), the output layer + softmax + loss (the model's ``head`` or ``out`` module, and any
  softmax/cross-entropy operator), the optimizer (``Optimizer.step``/``zero_grad``), data loading (the
  DataLoader's ``__next__``); other model operators (embeddings, attention, dropout, pooling) are the rest of the
  operators' time, and "Lightning + Python" is the wall time no operator accounts for.
* ``ddp``: ``strategy=ddp`` with 2 processes of 1 thread, each half the batch, against 1 process of 2 threads with
  the whole batch: total tokens/s of each.

Writes ``results/speed_<what>.json`` with the machine (CPU model and flags, cores, torch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import QUIET, RESULTS, ROOT, build_cli, machine, write  # noqa: E402
from reproduce import TASKS  # noqa: E402

SOFTMAX = ("softmax", "cross_entropy", "nll_loss", "log_sigmoid", "binary_cross_entropy", "adaptive")
PARTS = (
    "recurrent layers",
    "output layer + softmax + loss",
    "other model ops",
    "optimizer",
    "data loading",
    "Lightning + Python",
)
LABELS = {"rnnlab.recurrent": "recurrent layers", "rnnlab.output": "output layer + softmax + loss"}


def positions(batch) -> int:
    """Padded positions of a batch's main sequence (what the recurrent layers compute over)."""
    return int(batch.lengths.max()) * len(batch.lengths)


class StepTimer(L.Callback):
    """Wall time, real tokens and padded positions of the steps after ``warmup``; counts one warm-up step's FLOPs
    (``count_flops``) with the recurrent layers switched to the handwritten cells for that step."""

    def __init__(self, warmup: int, count_flops: bool = False, profile: bool = False) -> None:
        self.warmup, self.count_flops, self.profile = warmup, count_flops, profile
        self.tokens = self.positions = self.steps = self.seen = 0  # seen: batches so far, over epochs
        self.start = self.end = None
        self.flops_per_position = None
        self.profiler = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen == self.warmup - 1 and self.count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            self._impls = {m: m.impl for m in _recurrent(pl_module)}
            for m in self._impls:
                m.impl = "handwritten"
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        if self.seen == self.warmup:
            if self.profile:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen == self.warmup and self.count_flops:
            self._counter.__exit__(None, None, None)
            for m, impl in self._impls.items():
                m.impl = impl
            self.flops_per_position = self._counter.get_total_flops() / positions(batch)
        if self.seen > self.warmup:
            self.steps += 1
            self.tokens += int(batch.lengths.sum())
            self.positions += positions(batch)
            self.end = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if self.profiler is not None:
            self.profiler.__exit__(None, None, None)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _recurrent(module):
    from rnnlab.nn.recurrent import Recurrent

    return [m for m in module.modules() if isinstance(m, Recurrent)]


def train_steps(task: str, args, extra=(), count_flops=False, profile=False, prepare=None) -> tuple[StepTimer, object]:
    """Fit ``task``'s config for warm-up + timed steps, validation and checkpoints off (``prepare(model)`` first)."""
    config, task_extra, *_ = TASKS[task]
    cli = build_cli(
        [
            "--config",
            str(ROOT / config),
            *QUIET,
            *task_extra,
            f"--trainer.max_steps={args.warmup + args.steps}",
            "--trainer.max_epochs=-1",
            "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.logger=false",
            *extra,
        ]
    )
    timer = StepTimer(args.warmup, count_flops, profile)
    # the timer alone: no checkpoints, early stopping or samples in a timing window
    cli.trainer.callbacks = [timer]
    if prepare is not None:
        prepare(cli.model)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer, cli


def gemm_peak(seconds: float = 2.0) -> dict:
    """GFLOP/s of a 2048x2048x2048 matmul, fp32 and bf16, best of a few timed loops."""
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        for _ in range(2):
            a @ b
        best = 0.0
        for _ in range(3):
            n, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / 3 or n < 2:
                a @ b
                n += 1
            best = max(best, 2 * 2048**3 * n / elapsed / 1e9)
        out[name] = round(best, 1)
    return out


def precision(args) -> dict:
    peak = gemm_peak()
    print(f"GEMM peak: fp32 {peak['fp32']} GFLOP/s, bf16 {peak['bf16']} GFLOP/s", flush=True)
    rows = {}
    for task in args.tasks:
        runs = {"32-true": [], "bf16-mixed": []}
        flops_per_position = None
        for _ in range(args.rounds):
            for prec in runs:
                timer, _ = train_steps(
                    task, args, [f"--trainer.precision={prec}"], count_flops=flops_per_position is None
                )
                flops_per_position = flops_per_position or timer.flops_per_position
                runs[prec].append(
                    {
                        "seconds": timer.seconds,
                        "tokens": timer.tokens,
                        "positions": timer.positions,
                        "steps": timer.steps,
                    }
                )
        row = {"config": TASKS[task][0], "flops_per_position": flops_per_position}
        for prec, rs in runs.items():
            seconds = sum(x["seconds"] for x in rs)
            tokens, pos = sum(x["tokens"] for x in rs), sum(x["positions"] for x in rs)
            gflops = flops_per_position * pos / seconds / 1e9
            key = "fp32" if prec == "32-true" else "bf16"
            row[key] = {
                "tokens_per_s": round(tokens / seconds),
                "steps_per_s": round(sum(x["steps"] for x in rs) / seconds, 3),
                "gflops": round(gflops, 2),
                "of_peak": round(gflops / peak[key], 4),
                "rounds": rs,
            }
        row["bf16_speedup"] = round(row["bf16"]["tokens_per_s"] / row["fp32"]["tokens_per_s"], 3)
        rows[task] = row
        print(
            f"{task:15} fp32 {row['fp32']['tokens_per_s']:>8,} tok/s {row['fp32']['gflops']:6.1f} GFLOP/s | "
            f"bf16 {row['bf16']['tokens_per_s']:>8,} tok/s {row['bf16']['gflops']:6.1f} GFLOP/s | "
            f"bf16/fp32 {row['bf16_speedup']:.2f}x",
            flush=True,
        )
    return {"gemm_peak_gflops": peak, "tasks": rows}


def part_of(event, backward_of: dict) -> str:
    """The part of the step an operator event belongs to: its nearest enclosing part that is named (a labelled
    module's forward, or a backward operator of one: ``backward_of`` maps sequence numbers to parts)."""
    e = event
    while e is not None:
        name = e.name
        if name in LABELS:
            return LABELS[name]
        if "Backward" in name and e.sequence_nr in backward_of:
            return backward_of[e.sequence_nr]
        if name.startswith("rnnlab.forward_backward"):  # the closure Lightning runs inside Optimizer.step
            return "other model ops"
        if name.startswith("Optimizer.step") or name.startswith("Optimizer.zero_grad"):
            return "optimizer"
        if name.startswith("enumerate(DataLoader)"):
            return "data loading"
        if any(s in name.lower() for s in SOFTMAX):
            return "output layer + softmax + loss"
        e = e.cpu_parent
    return "other model ops"


def label(model) -> None:
    """Run every recurrent layer's forward inside ``record_function("rnnlab.recurrent")`` and the output layer's
    (a model's ``head``, the seq2seq decoder's ``out``) inside ``rnnlab.output``."""
    from rnnlab.nn.recurrent import Recurrent

    def wrap(module, name):
        forward = module.forward

        def labelled(*a, **k):
            with torch.profiler.record_function(name):
                return forward(*a, **k)

        module.forward = labelled

    for m in model.modules():
        if isinstance(m, Recurrent):
            wrap(m, "rnnlab.recurrent")
    for attr in ("head", "out"):
        if isinstance(getattr(model, attr, None), torch.nn.Module):
            wrap(getattr(model, attr), "rnnlab.output")


def profile(args) -> dict:
    from lightning.pytorch.loops.optimization.automatic import Closure

    closure = Closure.__call__

    def labelled_closure(self, *a, **k):
        with torch.profiler.record_function("rnnlab.forward_backward"):
            return closure(self, *a, **k)

    Closure.__call__ = labelled_closure
    rows = {}
    try:
        for task in args.tasks:
            timer, _ = train_steps(task, args, profile=True, prepare=label)
            events = timer.profiler.events()
            # the forward operators inside a labelled module: autograd gives their backward the same sequence number
            backward_of = {}
            for e in events:
                p = e
                while p is not None and p.name not in LABELS:
                    p = p.cpu_parent
                if p is not None and e.sequence_nr >= 0:
                    backward_of[e.sequence_nr] = LABELS[p.name]
            seconds = {part: 0.0 for part in PARTS}
            for e in events:
                if e.device_type != torch.autograd.DeviceType.CPU:
                    continue
                seconds[part_of(e, backward_of)] += e.self_cpu_time_total / 1e6
            wall = timer.seconds
            seconds["Lightning + Python"] = max(wall - sum(seconds.values()), 0.0)
            share = {k: round(v / wall, 4) for k, v in seconds.items()}
            rows[task] = {
                "config": TASKS[task][0],
                "steps": timer.steps,
                "wall_seconds": round(wall, 3),
                "share": share,
            }
            print(f"{task:15} " + "  ".join(f"{k} {100 * v:4.1f}%" for k, v in share.items()), flush=True)
    finally:
        Closure.__call__ = closure
    return {"tasks": rows, "note": "profiled wall time includes the profiler's own overhead"}


def ddp(args) -> dict:
    rows = {}
    for task in args.tasks:
        batch = int(_batch_size(task))
        out = {}
        for procs in (1, 2):
            cmd = [
                sys.executable,
                __file__,
                "_ddp_worker",
                task,
                str(procs),
                str(batch // procs),
                str(args.warmup),
                str(args.steps),
            ]
            env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // procs)))
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
            if res.returncode or not line:
                raise SystemExit(f"ddp worker failed ({procs} processes):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
            out[f"{procs}_process"] = json.loads(line[-1][len("RESULT ") :])
        out["speedup"] = round(out["2_process"]["tokens_per_s"] / out["1_process"]["tokens_per_s"], 3)
        out["batch_total"] = batch
        rows[task] = out
        print(
            f"{task:15} 1 process {out['1_process']['tokens_per_s']:>8,} tok/s | 2 processes "
            f"{out['2_process']['tokens_per_s']:>8,} tok/s | {out['speedup']:.2f}x",
            flush=True,
        )
    return {"tasks": rows}


def _batch_size(task: str) -> int:
    import yaml

    config = yaml.safe_load((ROOT / TASKS[task][0]).read_text())
    return config["data"]["init_args"].get("batch_size", 64)


def _ddp_worker(task: str, procs: int, batch: int, warmup: int, steps: int) -> None:
    args = argparse.Namespace(warmup=warmup, steps=steps)
    extra = [f"--data.init_args.batch_size={batch}", "--trainer.accelerator=cpu"]
    if procs > 1:
        extra += [f"--trainer.devices={procs}", "--trainer.strategy=ddp"]
    timer, cli = train_steps(task, args, extra)
    tokens = torch.tensor([timer.tokens], dtype=torch.float64)
    if procs > 1:
        import torch.distributed as dist

        dist.all_reduce(tokens)
    if cli.trainer.global_rank == 0:
        print(
            "RESULT "
            + json.dumps(
                {
                    "tokens_per_s": round(float(tokens) / timer.seconds),
                    "seconds": round(timer.seconds, 3),
                    "steps": timer.steps,
                    "batch_per_process": batch,
                    "threads_per_process": torch.get_num_threads(),
                }
            ),
            flush=True,
        )


def precision_table() -> str:
    p = RESULTS / "speed_precision.json"
    if not p.exists():
        return "(not measured yet)"
    d = json.loads(p.read_text())
    peak, m = d["gemm_peak_gflops"], d["machine"]
    out = [
        "| task | fp32 tokens/s | fp32 GFLOP/s (of peak) | bf16-mixed tokens/s | bf16 GFLOP/s (of peak) | bf16 / fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for task, r in d["tasks"].items():
        f, b = r["fp32"], r["bf16"]
        out.append(
            f"| {task} | {f['tokens_per_s']:,} | {f['gflops']:.1f} ({100 * f['of_peak']:.0f}%) | "
            f"{b['tokens_per_s']:,} | {b['gflops']:.1f} ({100 * b['of_peak']:.0f}%) | {r['bf16_speedup']:.2f}x |"
        )
    out += [
        "",
        f"GEMM peak measured in the same run (2048^3 matmul): fp32 {peak['fp32']} GFLOP/s, bf16 {peak['bf16']} GFLOP/s. "
        f"{m['cpus']} cores of {m.get('cpu_model', '?')} ({', '.join(m.get('cpu_flags', []))}), torch {m['torch']}; "
        f"{d['steps']} steps after {d['warmup']} warm-up steps per run; `{d['command']}`.",
    ]
    return "\n".join(out)


def profile_table() -> str:
    p = RESULTS / "speed_profile.json"
    if not p.exists():
        return "(not measured yet)"
    d = json.loads(p.read_text())
    out = ["| task | " + " | ".join(PARTS) + " |", "|---" * (len(PARTS) + 1) + "|"]
    for task, r in d["tasks"].items():
        out.append(f"| {task} | " + " | ".join(f"{100 * r['share'][k]:.0f}%" for k in PARTS) + " |")
    out += ["", f"fp32, {d['steps']} steps after {d['warmup']} warm-up steps per task; `{d['command']}`."]
    return "\n".join(out)


def ddp_table() -> str:
    p = RESULTS / "speed_ddp.json"
    if not p.exists():
        return "(not measured yet)"
    d = json.loads(p.read_text())
    out = [
        "| task | total batch | 1 process (2 threads) tokens/s | 2 DDP processes (1 thread each) tokens/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for task, r in d["tasks"].items():
        out.append(
            f"| {task} | {r['batch_total']} | {r['1_process']['tokens_per_s']:,} | {r['2_process']['tokens_per_s']:,} | "
            f"{r['speedup']:.2f}x |"
        )
    out += ["", f"{d['steps']} steps after {d['warmup']} warm-up steps; `{d['command']}`."]
    return "\n".join(out)


def table() -> str:
    return "\n\n".join([precision_table(), profile_table(), ddp_table()])


def main() -> None:
    if sys.argv[1:2] == ["_ddp_worker"]:
        task, procs, batch, warmup, steps = sys.argv[2:7]
        return _ddp_worker(task, int(procs), int(batch), int(warmup), int(steps))
    if sys.argv[1:] == ["--table"]:
        return print(table())
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["precision", "profile", "ddp"])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2, help="precision: fp32/bf16 alternations")
    args = p.parse_args()
    result = {"precision": precision, "profile": profile, "ddp": ddp}[args.what](args)
    result.update(
        command="python benchmarks/speed.py " + " ".join(sys.argv[1:]),
        warmup=args.warmup,
        steps=args.steps,
        machine=machine(),
    )
    write(f"speed_{args.what}", result)
    print(table())


if __name__ == "__main__":
    main()
