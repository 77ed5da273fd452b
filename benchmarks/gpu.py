"""The speed measurements of a GPU machine, for the default IMDB BiLSTM (configs/imdb_lstm.yaml's model and batches):

1. per GPU: torch's packed cuDNN kernels against rnnlab's padded driver, each in fp32 and under bf16 autocast
   (``packed`` True/False x ``precision``), training tokens/s (real tokens, not padding) after a warm-up;
2. scale: the same loop under DDP on 1 and on N GPUs (``torchrun``), the same batch per GPU, total tokens/s and the
   scaling efficiency (N-GPU throughput / (N x 1-GPU throughput)).

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/gpu.py            # every GPU of the machine
    python benchmarks/gpu.py --smoke                                      # the same code on the CPU, tiny data

Without a CUDA device the measurement says so and writes nothing (no GPU figure of rnnlab is measured yet: the
project's machines have had none). ``--smoke`` runs every path of this script on the CPU on synthetic batches, so a
change that breaks it shows before a GPU is at hand (``tests/test_benchmark_runner.py`` runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write  # noqa: E402
from rnnlab.contract import Batch  # noqa: E402
from rnnlab.models import SequenceClassifier  # noqa: E402
from rnnlab.nn.recurrent import RecurrentSpec  # noqa: E402


def batches(args) -> tuple[list[Batch], int]:
    """``(batches, vocabulary size)``: IMDB's training batches as ``fit`` makes them (length-bucketed, 64 reviews,
    400 tokens), or synthetic ones of the same shapes with ``--smoke``."""
    if args.smoke:
        g = torch.Generator().manual_seed(0)
        out = []
        for _ in range(args.batches + args.warmup):
            lengths = torch.randint(5, 40, (8,), generator=g)
            tokens = torch.randint(2, 100, (8, int(lengths.max())), generator=g)
            tokens[torch.arange(tokens.shape[1])[None] >= lengths[:, None]] = 0
            target = torch.randint(0, 2, (8,), generator=g)
            out.append(Batch(tokens=tokens, lengths=lengths, target=target, index=torch.arange(8)))
        return out, 100
    from rnnlab.data.imdb import IMDBDataModule

    dm = IMDBDataModule(max_length=400, batch_size=64)
    dm.setup("fit")
    loader = dm.train_dataloader()
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) >= args.batches + args.warmup:
            break
    return out, dm.vocab_size


def model(vocab_size: int, packed: bool) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(
        vocab_size, 2, embedding_dim=128, rnn=RecurrentSpec("lstm", "torch", 128, 1, True, packed=packed)
    )


def train(net, data: list[Batch], device: torch.device, bf16: bool, warmup: int, ddp: bool = False) -> dict:
    """Training tokens/s of ``net`` on ``data`` (after ``warmup`` batches), AdamW, clipping as the config."""
    net = net.to(device).train()
    step_net = net
    if ddp:
        ids = [device.index] if device.type == "cuda" else None
        step_net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.01)
    tokens, start = 0, None
    for i, batch in enumerate(data):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            tokens, start = 0, time.perf_counter()
        x, lengths, y = batch.tokens.to(device), batch.lengths, batch.target.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(step_net(x, lengths).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        tokens += int(lengths.sum())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {"tokens_per_s": round(tokens / seconds), "batches": len(data) - warmup, "seconds": round(seconds, 2)}


def per_device(args, device: torch.device) -> dict:
    data, vocab = batches(args)
    rows = {}
    for packed in (True, False):
        for bf16 in (False, True):
            name = f"{'packed cuDNN' if packed else 'padded driver'}, {'bf16 autocast' if bf16 else 'fp32'}"
            rows[name] = train(model(vocab, packed), data, device, bf16, args.warmup)
            print(f"{name}: {rows[name]['tokens_per_s']:,} tokens/s", flush=True)
    return rows


def ddp_worker(args) -> None:
    """One rank of ``torchrun``: the padded-or-packed fp32/bf16 setting given, its own shard of the batches."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available() and not args.smoke
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    data, vocab = batches(args)
    shard = data[rank::world]
    dist.barrier()
    result = train(model(vocab, args.packed), shard, device, args.bf16, max(args.warmup // world, 1), ddp=True)
    totals = [None] * world
    dist.all_gather_object(totals, result)
    if rank == 0:
        Path(args.report).write_text(json.dumps(totals))
    dist.destroy_process_group()


def scale(args, n: int) -> dict:
    """Total tokens/s of ``n`` DDP processes (one per GPU; gloo on the CPU with ``--smoke``)."""
    report = Path(f"/tmp/rnnlab_cuda_ddp_{os.getpid()}_{n}.json")
    flags = ["--smoke"] * args.smoke + ["--bf16"] * args.bf16 + ["--packed"] * args.packed
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__,
           "--ddp-worker", str(report), "--batches", str(args.batches), "--warmup", str(args.warmup), *flags]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True)
    ranks = json.loads(report.read_text())
    report.unlink()
    return {"processes": n, "tokens_per_s": sum(r["tokens_per_s"] for r in ranks), "ranks": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="measured batches (per run)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="every path on the CPU, synthetic batches")
    parser.add_argument("--ddp-worker", dest="report", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--packed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.batches, args.warmup = 4, 2
    if args.report:
        return ddp_worker(args)
    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA device here: nothing measured, nothing written (GPU figures are not measured yet)")
        return
    device = torch.device("cuda", 0) if not args.smoke else torch.device("cpu")
    gpus = torch.cuda.device_count() if not args.smoke else 2
    result = {
        "device": torch.cuda.get_device_name(0) if not args.smoke else "cpu (smoke)",
        "gpus": gpus,
        "per_device": per_device(args, device),
    }
    args.packed = device.type == "cuda"  # the faster kernel there; the padded driver on the CPU
    args.bf16 = device.type == "cuda"
    one = scale(args, 1)
    result["ddp"] = {"1": one}
    if gpus > 1:
        many = scale(args, gpus)
        many["efficiency"] = round(many["tokens_per_s"] / (gpus * one["tokens_per_s"]), 3)
        result["ddp"][str(gpus)] = many
    print(json.dumps(result["ddp"], indent=1))
    if not args.smoke:
        write("gpu_imdb_bilstm", {"command": "python benchmarks/gpu.py", **result})


if __name__ == "__main__":
    main()
