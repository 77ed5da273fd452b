"""The handwritten layer loop of a given commit against this checkout's, side by side in one process: same inputs,
forward + backward of a bidirectional layer, best of N alternating runs; also the largest output and gradient
differences.

    python benchmarks/cells_refactor.py a9dfbf1 [repeats]      # -> results/cells_refactor.json
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write  # noqa: E402
from rnnlab.nn import cells as current  # noqa: E402


def load_old(rev: str):
    source = subprocess.run(
        ["git", "show", f"{rev}:src/rnnlab/nn/cells.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "cells_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cells_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(rev: str, repeats: int = 5) -> dict:
    old = load_old(rev)
    torch.manual_seed(0)
    B, T, D, H = 64, 200, 128, 128
    rows = {}
    for cell, G in (("lstm", 4), ("gru", 3), ("rnn", 1)):
        x = torch.randn(B, T, D)
        lengths = torch.randint(150, T + 1, (B,))
        lengths[0] = T
        weights = [
            [torch.randn(G * H, D) * 0.05, torch.randn(G * H, H) * 0.05, torch.zeros(G * H), torch.zeros(G * H)]
            for _ in range(2)
        ]
        for w in (w for ws in weights for w in ws):
            w.requires_grad_(True)
        h0 = torch.zeros(2, B, H)
        c0 = torch.zeros(2, B, H) if cell == "lstm" else None

        def run(module, cell=cell, x=x, lengths=lengths, h0=h0, c0=c0, weights=weights):
            for w in (w for ws in weights for w in ws):
                w.grad = None
            out, _, _ = module.run_layer(cell, x, lengths, h0, c0, weights)
            out.sum().backward()
            return out.detach(), weights[0][1].grad.clone()

        times = {"old": [], "new": []}
        for _ in range(repeats):
            for name, module in (("old", old), ("new", current)):
                start = time.perf_counter()
                run(module)
                times[name].append(time.perf_counter() - start)
        (o1, g1), (o2, g2) = run(old), run(current)
        rows[cell] = {
            "old_seconds": round(min(times["old"]), 4),
            "new_seconds": round(min(times["new"]), 4),
            "new_over_old": round(min(times["new"]) / min(times["old"]), 3),
            "max_output_diff": float((o1 - o2).abs().max()),
            "max_grad_diff": float((g1 - g2).abs().max()),
        }
        print(cell, rows[cell], flush=True)
    result = {
        "command": f"python benchmarks/cells_refactor.py {rev} {repeats}",
        "old": rev,
        "shape": {"batch": B, "steps": T, "input": D, "hidden": H, "bidirectional": True, "lengths": "150-200"},
        "repeats": repeats,
        "results": rows,
    }
    write("cells_refactor", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
