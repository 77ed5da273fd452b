"""Training throughput of the default IMDB BiLSTM three ways, on the same encoded data, one run:

1. ``packed``:   a plain PyTorch loop as usually written -- shuffled batches, ``pack_padded_sequence`` + ``nn.LSTM``;
2. ``raw``:      a plain PyTorch loop over rnnlab's model (padded driver) and length-bucketed batches;
3. ``lightning``: the same model and batches through ``lightning.Trainer`` (what ``main.py fit`` runs).

``packed`` is measured on its first ``--packed-batches`` batches (it is ~10x slower: a full epoch takes ~15 min);
``raw`` and ``lightning`` on full epochs, alternated (raw, lightning, raw, lightning, ...) ``--rounds`` times so
that drift of the machine hits both alike; the mean of each is reported. Reports real (non-padding) tokens/s, the
speed-up of ``lightning`` over ``packed``, and Lightning's overhead over ``raw``.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/throughput.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write  # noqa: E402
from rnnlab.callbacks import ThroughputMonitor  # noqa: E402
from rnnlab.data.imdb import IMDBDataModule  # noqa: E402
from rnnlab.models import SequenceClassifier  # noqa: E402
from rnnlab.nn.recurrent import RecurrentSpec  # noqa: E402
from rnnlab.optim import Constant, adamw  # noqa: E402

HP = dict(
    embedding_dim=128,
    rnn=RecurrentSpec("lstm", "torch", 128, 1, True),
    pooling="max",
    dropout=0.3,
    embedding_dropout=0.2,
    optimizer=adamw(3e-3),
)


class PackedBiLSTM(nn.Module):
    """The same model written the usual way: nn.LSTM on a PackedSequence, max pooling over real steps."""

    def __init__(self, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, HP["embedding_dim"], padding_idx=0)
        self.lstm = nn.LSTM(HP["embedding_dim"], HP["rnn"].hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(HP["dropout"])
        self.head = nn.Linear(2 * HP["rnn"].hidden_size, num_classes)

    def forward(self, tokens, lengths):
        x = F.dropout(self.embedding(tokens), HP["embedding_dropout"], self.training)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, padding_value=float("-inf"))
        return self.head(self.dropout(out.amax(1)))


def train_loop(model, batches, max_batches=None) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    tokens = n = 0
    start = time.perf_counter()
    for batch in batches:
        loss = F.cross_entropy(model(batch.tokens, batch.lengths), batch.target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(batch.lengths.sum())
        n += 1
        if max_batches and n >= max_batches:
            break
    seconds = time.perf_counter() - start
    return {"tokens_per_s": tokens / seconds, "batches": n, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packed-batches", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    dm = IMDBDataModule(max_length=args.max_length, batch_size=64)
    dm.setup("fit")
    train = dm.datasets["train"]
    epoch_tokens = sum(train.lengths())

    plain = DataLoader(train, batch_size=64, shuffle=True, collate_fn=dm.collate)
    packed = train_loop(PackedBiLSTM(dm.vocab_size, dm.num_classes), plain, args.packed_batches)
    print(f"packed nn.LSTM loop: {packed['tokens_per_s']:,.0f} tokens/s ({packed['batches']} batches)")

    raws, lights = [], []
    for round_ in range(args.rounds):
        torch.manual_seed(round_)
        raws.append(train_loop(SequenceClassifier(dm.vocab_size, dm.num_classes, **HP), dm.train_dataloader()))
        print(f"raw loop, padded driver: {raws[-1]['tokens_per_s']:,.0f} tokens/s ({raws[-1]['seconds']:.1f} s/epoch)")
        torch.manual_seed(round_)
        monitor = ThroughputMonitor()
        model = SequenceClassifier(dm.vocab_size, dm.num_classes, **HP, scheduler=Constant())
        trainer = L.Trainer(
            max_epochs=1,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            gradient_clip_val=1.0,
            use_distributed_sampler=False,
            callbacks=[monitor],
            num_sanity_val_steps=0,
        )
        trainer.fit(model, datamodule=dm)
        lights.append(
            {
                "tokens_per_s": monitor.last["tokens_per_s"],
                "seconds": monitor.last["epoch_seconds"],
                "padding": monitor.last["padding"],
            }
        )
        print(
            f"lightning, padded driver: {lights[-1]['tokens_per_s']:,.0f} tokens/s "
            f"({lights[-1]['seconds']:.1f} s/epoch)"
        )
    mean = lambda runs, key: sum(r[key] for r in runs) / len(runs)  # noqa: E731
    raw = {"tokens_per_s": mean(raws, "tokens_per_s"), "seconds": mean(raws, "seconds"), "runs": raws}
    light = {
        "tokens_per_s": mean(lights, "tokens_per_s"),
        "seconds": mean(lights, "seconds"),
        "padding": lights[0]["padding"],
        "runs": lights,
    }

    result = {
        "command": "python benchmarks/throughput.py",
        "max_length": args.max_length,
        "epoch_tokens": epoch_tokens,
        "packed_loop": {**packed, "epoch_seconds_estimate": epoch_tokens / packed["tokens_per_s"]},
        "raw_padded_loop": raw,
        "lightning": light,
        "speedup_lightning_vs_packed": light["tokens_per_s"] / packed["tokens_per_s"],
        "lightning_overhead": raw["tokens_per_s"] / light["tokens_per_s"] - 1,
    }
    write("throughput_imdb_bilstm", result)
    print(
        f"speed-up over the packed loop: {result['speedup_lightning_vs_packed']:.1f}x; "
        f"Lightning overhead vs raw loop: {100 * result['lightning_overhead']:+.1f}%"
    )


if __name__ == "__main__":
    main()
