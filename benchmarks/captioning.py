"""Image captioning on real handwritten digit scans: configs/caption_digits_attn.yaml with and without attention (and
with the doubly stochastic regulariser), greedy and beam decoding, against a nearest-neighbour caption baseline.

    python benchmarks/captioning.py [attn noattn attn_ds nn]     # each in its own process; then the table
    python benchmarks/captioning.py --table

Scenes: 8,000 training, 1,000 validation and 1,000 test scenes of 1-4 digits; test scenes are built from digit
images that no training scene contains. Each variant trains with the config's schedule (early stopping on validation
BLEU); the test set is then read once per reported row (greedy, then beam 5). Metrics: corpus BLEU-4 (sacreBLEU,
13a tokenisation, the one reference each scene has), chrF, and exact match (the caption equals the reference word for
word). CIDEr is not reported: no maintained package computes it (pycocoevalcap, the reference code, was last
released in 2020 and its tokeniser needs Java). The attention variant's maps over 4 test scenes go to
docs/img/caption_attention.png.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, fit_and_test, main, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "caption_digits_attn.yaml")
VARIANTS = {
    "attn": [],
    "noattn": ["--model.init_args.attention=none"],
    "attn_ds": ["--model.init_args.doubly_stochastic=1.0"],
}
PICTURE = ROOT / "docs" / "img" / "caption_attention.png"


def run_variant(name: str) -> dict:
    run = fit_and_test(CONFIG, VARIANTS[name], name=f"caption_digits_{name}", test=False)
    cli, model = run.cli, run.cli.model
    rows = {}
    for label, beam in (("greedy", 1), ("beam5", 5)):
        model.hparams.beam_size = beam
        scores = cli.trainer.test(model, ckpt_path="best", datamodule=cli.datamodule, verbose=False)[0]
        rows[label] = {k.split("/", 1)[1]: round(float(v), 2) for k, v in scores.items() if k.startswith("test/")}
        rows[label]["samples"] = [
            {"scene": i, "caption": hyp, "reference": cli.datamodule.all_references("test")[i][0]}
            for i, hyp in model.translations["test"][:5]
        ]
    if name == "attn":
        attention_picture(model, cli.datamodule)
    return {
        "variant": name,
        "command": f"python main.py fit --config configs/caption_digits_attn.yaml {' '.join(VARIANTS[name])}".strip(),
        "fit_seconds": run.fit_seconds,
        "epochs": len(run.epochs),
        "best_val_bleu": round(run.best_score, 2) if run.best_score is not None else None,
        **rows,
    }


def nearest_neighbour() -> dict:
    """Each test scene gets the caption of the training scene nearest to it in pixel space (L2)."""
    import sacrebleu

    from rnnlab.data.captions import DigitScenesDataModule

    dm = DigitScenesDataModule()
    dm.setup("fit")
    start = time.perf_counter()
    train, test = dm.images["train"].flatten(1).float(), dm.images["test"].flatten(1).float()
    nearest = torch.cdist(test, train).argmin(1)
    train_refs, test_refs = dm.all_references("train"), dm.all_references("test")
    image_caption = {dm.datasets["train"].image_of[k]: train_refs[k][0] for k in range(len(train_refs))}
    hyps = [image_caption[int(j)] for j in nearest]
    refs = [r[0] for r in test_refs]
    return {
        "variant": "nn",
        "command": "python benchmarks/captioning.py nn",
        "seconds": round(time.perf_counter() - start, 1),
        "greedy": {
            "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2),
            "exact": round(100 * sum(h == r for h, r in zip(hyps, refs)) / len(refs), 2),
        },
    }


def attention_picture(model, dm, scenes: tuple[int, ...] = (0, 1, 2, 3)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model.eval()
    images = torch.stack([dm.images["test"][i] for i in scenes]).float() / 255
    lengths = torch.ones(len(scenes), dtype=torch.long)
    with torch.no_grad():
        ids = model.greedy(images, lengths)
        weights = model.attention_map(images, lengths, ids)
    side = int(weights.shape[-1] ** 0.5)
    words = [dm.target_tokens(row.tolist()) for row in ids]
    cols = max(len(w) for w in words) + 1
    fig, axes = plt.subplots(len(scenes), cols, figsize=(1.3 * cols, 1.5 * len(scenes)), squeeze=False)
    for r, scene in enumerate(scenes):
        for ax in axes[r]:
            ax.axis("off")
        axes[r][0].imshow(images[r, 0], cmap="gray_r")
        axes[r][0].set_title(f"test scene {scene}", fontsize=7)
        for t, word in enumerate(words[r]):
            grid = weights[r, t].view(1, 1, side, side)
            up = torch.nn.functional.interpolate(grid, size=images.shape[-2:], mode="bilinear")[0, 0]
            axes[r][t + 1].imshow(images[r, 0], cmap="gray_r")
            axes[r][t + 1].imshow(up, cmap="viridis", alpha=0.6)
            axes[r][t + 1].set_title(word, fontsize=8)
    fig.suptitle("Where the captioner looks for each word it writes (greedy decoding, attention over a 4x4 grid)")
    fig.tight_layout()
    PICTURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PICTURE, dpi=110)
    plt.close(fig)


def run_one(name: str) -> dict:
    import os

    result = nearest_neighbour() if name == "nn" else run_variant(name)
    if os.environ.get("RNNLAB_TIMING_NOTE"):
        result["timing_note"] = os.environ["RNNLAB_TIMING_NOTE"]
    write(f"captioning_{name}", result)
    return result


def table() -> str:
    rows = []
    for name, label in (("attn", "attention"), ("attn_ds", "attention + doubly stochastic"),
                        ("noattn", "no attention (global image vector)"), ("nn", "nearest-neighbour caption")):  # fmt: skip
        path = RESULTS / f"captioning_{name}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        for decoding in ("greedy", "beam5"):
            if decoding in r:
                m = r[decoding]
                how = "-" if name == "nn" else decoding.replace("beam5", "beam 5")
                fit = f"{r['fit_seconds'] / 60:.1f} min" if "fit_seconds" in r else f"{r['seconds']:.1f} s"
                fit = ("<= " if "timing_note" in r else "") + fit
                rows.append(f"| {label} | {how} | {m['bleu']:.1f} | {m['chrf']:.1f} | {m['exact']:.1f}% | {fit} |")
    if not rows:
        return "(not measured yet)"
    head = ["| model | decoding | BLEU-4 | chrF | exact match | fit time |", "|---|---|---|---|---|---|"]
    return "\n".join(head + rows)


if __name__ == "__main__":
    main(__file__, run_one, table, ["attn", "noattn", "attn_ds", "nn"])
