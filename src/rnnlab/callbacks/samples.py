"""Generated samples at the end of each validation epoch: a W&B table when W&B logs, ``samples.txt`` otherwise."""

from __future__ import annotations

from typing import Optional

import lightning as L

from rnnlab.runs import run_dir


class GenerationSamples(L.Callback):
    """For models that ``generate`` (language models): after each validation epoch, continue each prompt (default:
    the DataModule's ``default_prompts()``, e.g. a newline for a text, every language for names) and record the
    result -- in ``samples.txt`` of the run folder (appended per epoch) and, with a W&B logger, a ``samples`` table.

    Args:
        prompts: the prompts (None: the DataModule's defaults).
        max_new: characters per sample.
        temperature: sampling temperature.
        seed: sampling seed (the same per epoch, so samples show what changed in the model).
        every_n_epochs: how often (0 turns it off).
    """

    def __init__(
        self,
        prompts: Optional[list[str]] = None,
        max_new: int = 200,
        temperature: float = 0.8,
        seed: int = 0,
        every_n_epochs: int = 1,
    ) -> None:
        self.prompts, self.max_new, self.temperature = prompts, max_new, temperature
        self.seed, self.every_n_epochs = seed, every_n_epochs

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if (
            not hasattr(pl_module, "generate")
            or not hasattr(dm, "default_prompts")
            or trainer.sanity_checking
            or not self.every_n_epochs
            or (trainer.current_epoch + 1) % self.every_n_epochs
            or trainer.global_rank != 0
        ):
            return
        items = [i for i in dm.encode_predict(self.prompts or dm.default_prompts()) if "tokens" in i]
        if not items:
            return
        batch = dm.collate([(item["tokens"], None, k) for k, item in enumerate(items)])
        generated = pl_module.generate(
            batch.tokens.to(pl_module.device),
            batch.lengths,
            self.max_new,
            self.temperature,
            eos_id=pl_module.task.eos_id,
            seed=self.seed,
            banned=pl_module.task.banned_ids(),
            category=None if batch.category is None else batch.category.to(pl_module.device),
        )
        rows = [
            (item["input"], dm.render_prediction(item, {"generated": generated[k].cpu()})["output"])
            for k, item in enumerate(items)
        ]
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"=== epoch {trainer.current_epoch} (step {trainer.global_step})\n")
            for prompt, text in rows:
                f.write(f"--- {prompt!r}\n{text}\n")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_text(
                    key="samples",
                    columns=["epoch", "prompt", "sample"],
                    data=[[trainer.current_epoch, p, t] for p, t in rows],
                )


class PianoRollSamples(L.Callback):
    """For :class:`~rnnlab.models.music.PianoRollModel`: after each validation epoch, a new piece of ``steps`` steps
    (same seed every time) as ``samples/epoch<N>.mid`` and ``.png`` in the run folder; the picture also goes to W&B.

    Args:
        steps: length of the piece.
        temperature: sampling temperature.
        seed: sampling seed.
        every_n_epochs: how often (0 turns it off).
    """

    def __init__(self, steps: int = 64, temperature: float = 1.0, seed: int = 0, every_n_epochs: int = 5) -> None:
        self.steps, self.temperature, self.seed, self.every_n_epochs = steps, temperature, seed, every_n_epochs

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        from rnnlab.pianoroll import plot_roll, roll_to_midi

        if (
            trainer.sanity_checking
            or not self.every_n_epochs
            or (trainer.current_epoch + 1) % self.every_n_epochs
            or trainer.global_rank != 0
            or not hasattr(pl_module, "generate")
        ):
            return
        roll = pl_module.generate(self.steps, None, self.temperature, self.seed).cpu()
        folder = run_dir(trainer) / "samples"
        stem = folder / f"epoch{trainer.current_epoch}"
        roll_to_midi(roll, stem.with_suffix(".mid"))
        png = plot_roll(roll, stem.with_suffix(".png"), title=f"epoch {trainer.current_epoch}")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image(
                    key="samples/piano_roll", images=[str(png)], caption=[f"epoch {trainer.current_epoch}"]
                )


class TranslationSamples(L.Callback):
    """For :class:`~rnnlab.models.seq2seq.Seq2Seq`: after each validation epoch, the first ``n`` validation sentences
    as source / reference / hypothesis rows (``translations.txt`` in the run folder, appended per epoch; a W&B
    ``translations`` table) and their attention maps (``attention/epoch<N>.png``; also to W&B).

    Args:
        n: sentences shown.
        every_n_epochs: how often (0 turns it off).
    """

    def __init__(self, n: int = 4, every_n_epochs: int = 1) -> None:
        self.n, self.every_n_epochs = n, every_n_epochs

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if (
            trainer.sanity_checking
            or not self.every_n_epochs
            or (trainer.current_epoch + 1) % self.every_n_epochs
            or trainer.global_rank != 0
            or not hasattr(pl_module, "greedy")
            or not hasattr(dm, "references")
        ):
            return
        dataset = dm.dataset("val")
        picked = list(range(min(self.n, len(dataset))))
        batch = dm.collate([dataset[i] for i in picked])
        ids, weights = pl_module.greedy(batch.tokens.long().to(pl_module.device), batch.lengths, return_attention=True)
        rows = [
            (dm.source_text("val", i), dm.references("val")[i], dm.decode_target(ids[k].tolist()))
            for k, i in enumerate(picked)
        ]
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "translations.txt", "a", encoding="utf-8") as f:
            f.write(f"=== epoch {trainer.current_epoch} (step {trainer.global_step})\n")
            for src, ref, hyp in rows:
                f.write(f"SRC {src}\nREF {ref}\nHYP {hyp}\n\n")
        png = None
        if weights is not None:
            maps = []
            for k in range(len(picked)):
                src = dm.source_tokens(batch.tokens[k, : batch.lengths[k]].tolist())
                hyp = dm.target_tokens(ids[k].tolist())
                maps.append((src, hyp, weights[k, : len(hyp), : len(src)].float().cpu()))
            png = plot_attention(
                maps, folder / "attention" / f"epoch{trainer.current_epoch}.png", title=f"epoch {trainer.current_epoch}"
            )
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_text(
                    key="translations",
                    columns=["epoch", "source", "reference", "hypothesis"],
                    data=[[trainer.current_epoch, *row] for row in rows],
                )
                if png is not None:
                    logger.log_image(key="attention", images=[str(png)], caption=[f"epoch {trainer.current_epoch}"])


def plot_attention(maps, path, title: str = ""):
    """Attention heatmaps, one panel per sentence: rows the output tokens, columns the source tokens."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    # Chinese/Japanese tokens need a CJK font: the first of these that is installed is used, else boxes are drawn
    cjk = [
        "Noto Sans CJK SC",
        "Noto Sans CJK TC",
        "Source Han Sans SC",
        "WenQuanYi Zen Hei",
        "SimHei",
        "Microsoft YaHei",
        "PingFang SC",
        "DejaVu Sans",
    ]
    plt.rcParams["font.sans-serif"] = cjk + [f for f in plt.rcParams["font.sans-serif"] if f not in cjk]
    fig, axes = plt.subplots(1, len(maps), figsize=(4.5 * len(maps), 4.5), squeeze=False)
    for ax, (src, hyp, w) in zip(axes[0], maps):
        ax.imshow(w.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), src, rotation=90, fontsize=7)
        ax.set_yticks(range(len(hyp)), hyp, fontsize=7)
    fig.suptitle(title)
    with warnings.catch_warnings():  # fonts without CJK glyphs warn per character
        warnings.simplefilter("ignore")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
