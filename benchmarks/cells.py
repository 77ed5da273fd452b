"""Recurrent layer training throughput (forward + backward), tokens/s, one run:

torch's ``nn.RNN/LSTM/GRU`` on a padded tensor vs rnnlab's ``Recurrent`` driver with torch's kernels (padded,
exact per-sequence lengths), with a ``PackedSequence``, and with the handwritten cells.

    python benchmarks/cells.py                  # B=64, T=200, E=H=128; writes results/cells.json

Each figure is the median of ``--rounds`` measurements, the four implementations alternating round after round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write  # noqa: E402
from rnnlab.nn.recurrent import Recurrent  # noqa: E402


def tokens_per_s(step, tokens: int, min_seconds: float) -> float:
    for _ in range(2):
        step()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or n < 3:
        step()
        n += 1
    return tokens * n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per measurement")
    p.add_argument("--rounds", type=int, default=5, help="alternations of the four; the median of each is reported")
    args = p.parse_args()
    B, T, E = args.batch, args.steps, args.size
    torch.manual_seed(0)
    x = torch.randn(B, T, E)
    lengths = torch.full((B,), T)
    rows = []
    for cell in ("lstm", "gru", "rnn"):
        for bi in (False, True):
            ref = getattr(nn, cell.upper())(E, E, batch_first=True, bidirectional=bi)
            impls = {
                "nn": None,
                "torch": Recurrent(E, E, cell=cell, bidirectional=bi),
                "packed": Recurrent(E, E, cell=cell, bidirectional=bi, packed=True),
                "handwritten": Recurrent(E, E, cell=cell, bidirectional=bi, impl="handwritten"),
            }
            row = {"cell": cell, "bidirectional": bi}
            steps = {}
            for name, module in impls.items():
                xi = x.clone().requires_grad_(True)
                if module is None:

                    def step(ref=ref, xi=xi):
                        out, _ = ref(xi)
                        out.sum().backward()
                else:
                    module.load_state_dict(ref.state_dict())

                    def step(module=module, xi=xi):
                        out, _ = module(xi, lengths)
                        out.sum().backward()

                steps[name] = step
            # the four alternate, round after round, so that drift of a shared machine hits them alike
            samples = {name: [] for name in steps}
            for _ in range(args.rounds):
                for name, step in steps.items():
                    samples[name].append(tokens_per_s(step, B * T, args.seconds))
            for name, values in samples.items():
                row[name] = statistics.median(values)
            row["handwritten_vs_nn"] = row["handwritten"] / row["nn"]
            rows.append(row)
            print(
                f"{cell:4} {'bi ' if bi else 'uni'}  nn {row['nn']:>9,.0f}  driver {row['torch']:>9,.0f}  "
                f"packed {row['packed']:>9,.0f}  handwritten {row['handwritten']:>9,.0f}  "
                f"(handwritten/nn {row['handwritten_vs_nn']:.2f}x)",
                flush=True,
            )
    write(
        "cells",
        {
            "command": "python benchmarks/cells.py",
            "batch": B,
            "steps": T,
            "size": E,
            "rounds": args.rounds,
            "rows": rows,
        },
    )
    print(table(rows))


def table(rows) -> str:
    out = [
        "| cell | directions | nn.* padded | rnnlab padded (torch kernels) | rnnlab packed | rnnlab handwritten | "
        "handwritten / nn.* |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['cell'].upper()} | {'bi' if r['bidirectional'] else 'uni'} | {r['nn']:,.0f} | "
            f"{r['torch']:,.0f} | {r['packed']:,.0f} | {r['handwritten']:,.0f} | "
            f"{r['handwritten_vs_nn']:.2f}x |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        import json

        print(table(json.loads((Path(__file__).parent / "results" / "cells.json").read_text())["rows"]))
    else:
        main()
