"""CPU latency of exported models: onnxruntime against eager PyTorch, batch 1 and batch 32, side by side in one run.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/export_latency.py [imdb_lstm conll2000_pos_bilstm ...]

For each config: the model from ``runs/bench/<config>/version_*/checkpoints/last.ckpt`` when a benchmark trained one,
else the config's model with its initial weights on the real data's vocabulary (latency does not depend on the
values of the weights; the JSON says which). The same wrapper that ``rnnlab export`` writes is timed in PyTorch
(``torch.no_grad``, eval) and its ONNX graph in onnxruntime (CPU provider), both on all the machine's cores, in
alternating blocks on the same inputs: random ids of a typical length for the task (IMDB: 256 words, a review's median is
~230; CoNLL-2000: 24 words; the language model: one step). Parity is checked on the same inputs. Writes
results/export_latency.json.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # config -> typical length of one input (in steps)
    "imdb_lstm": 256,
    "conll2000_pos_bilstm": 24,
    "shakespeare_char_lstm": 1,
}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def load_model(config: str):
    from rnnlab.cli import RnnlabCLI, load_for_inference

    path = str(ROOT / "configs" / f"{config}.yaml")
    ckpts = sorted((ROOT / "runs" / "bench" / config).glob("version_*/checkpoints/last.ckpt"))
    if ckpts:
        model, dm, _ = load_for_inference(["--config", path, *QUIET], str(ckpts[-1]))
        return model, dm, str(ckpts[-1].relative_to(ROOT))
    cli = RnnlabCLI(args=["--config", path, *QUIET], run=False)
    cli.datamodule.setup("fit")
    cli.model.bind_task(cli.datamodule.describe_task(), "fit")
    return cli.model.eval(), cli.datamodule, "initial (no trained checkpoint in runs/bench)"


def inputs_for(model, dm, batch: int, length: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    vocab = len(dm.vocab) if getattr(dm, "vocab", None) is not None else 100
    tokens = torch.randint(2, vocab, (batch, length), generator=g)
    width = getattr(dm, "unit_features", 1)
    if type(model).__name__ == "SequenceTagger":  # the unit ids and, with a character encoder, the characters
        item = dm.encode_predict(["The company said its profit rose 5 % in the third quarter ."])[0]
        row = torch.as_tensor(item["tokens"]).long()
        width = row.shape[-1] if row.dim() == 2 else 1
        tokens = row[torch.randint(0, len(row), (batch, length), generator=g)].view(batch, length, width)
    return {"tokens": tokens, "lengths": torch.full((batch,), length, dtype=torch.long)}


def timed(fns: dict, repeats: int, rounds: int = 5) -> dict[str, list[float]]:
    """Latencies (ms) of each of ``fns``, timed in alternating blocks with a pause between them (a block right after
    another library's would share the cores with its still-spinning OpenMP threads)."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(0.3)
            for _ in range(3):
                fn()
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                fn()
                out[name].append(1000 * (time.perf_counter() - start))
    return {name: sorted(ms) for name, ms in out.items()}


def summary(ms: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3)}


def measure(config: str, length: int) -> dict:
    import onnxruntime

    from rnnlab.export import export_onnx, graph_for

    model, dm, weights = load_model(config)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, inputs_for(model, dm, 2, max(length, 2)), Path(tmp) / "m.onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rows = {}
        for batch in (1, 32):
            wrapper, feeds, _, _ = graph_for(model, inputs_for(model, dm, batch, length, seed=batch))
            numpy_feeds = {k: v.numpy() for k, v in feeds.items()}
            with torch.no_grad():
                expected = wrapper(*feeds.values())
            expected = expected[0] if isinstance(expected, tuple) else expected
            diff = float((torch.from_numpy(session.run(None, numpy_feeds)[0]) - expected).abs().max())
            repeats = 200 if length == 1 else (100 if batch == 1 else 30)

            def eager(wrapper=wrapper, feeds=feeds):
                with torch.no_grad():
                    wrapper(*feeds.values())

            def runtime(numpy_feeds=numpy_feeds):
                session.run(None, numpy_feeds)

            ms = timed({"torch": eager, "onnxruntime": runtime}, repeats)
            torch_ms, ort_ms = ms["torch"], ms["onnxruntime"]
            rows[f"batch_{batch}"] = {
                "torch": summary(torch_ms),
                "onnxruntime": summary(ort_ms),
                "speedup_p50": round(statistics.median(torch_ms) / statistics.median(ort_ms), 2),
                "max_abs_diff": diff,
                "repeats": repeats,
            }
    return {"model": type(model).__name__, "weights": weights, "length": length, **rows}


def main(configs: list[str]) -> dict:
    import onnxruntime

    results = {}
    for config in configs:
        results[config] = measure(config, CONFIGS[config])
        r = results[config]
        for b in ("batch_1", "batch_32"):
            print(
                f"{config:24s} {b:9s} torch p50 {r[b]['torch']['p50_ms']:8.3f} ms  onnxruntime p50 "
                f"{r[b]['onnxruntime']['p50_ms']:8.3f} ms  x{r[b]['speedup_p50']:.2f}  (diff {r[b]['max_abs_diff']:.1e})"
            )
    result = {
        "command": f"python benchmarks/export_latency.py {' '.join(configs)}",
        "onnxruntime": onnxruntime.__version__,
        "threads": torch.get_num_threads(),
        "results": results,
        "timing_note": os.environ.get("RNNLAB_TIMING_NOTE", "nothing else ran on the machine during the timings"),
    }
    write("export_latency", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:] or list(CONFIGS))
