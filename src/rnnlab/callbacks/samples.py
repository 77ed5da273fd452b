"""Generated samples at the end of each validation epoch: a W&B table when W&B logs, ``samples.txt`` otherwise."""

from __future__ import annotations

from typing import Optional

import lightning as L

from rnnlab.callbacks.confusion import run_dir
from rnnlab.data.batching import pad_collate
from rnnlab.models.language_model import banned_ids


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

    def __init__(self, prompts: Optional[list[str]] = None, max_new: int = 200, temperature: float = 0.8,
                 seed: int = 0, every_n_epochs: int = 1) -> None:
        self.prompts, self.max_new, self.temperature = prompts, max_new, temperature
        self.seed, self.every_n_epochs = seed, every_n_epochs

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if (not hasattr(pl_module, "generate") or not hasattr(dm, "default_prompts") or trainer.sanity_checking
                or not self.every_n_epochs or (trainer.current_epoch + 1) % self.every_n_epochs
                or trainer.global_rank != 0):
            return
        items = [i for i in dm.encode_predict(self.prompts or dm.default_prompts()) if "tokens" in i]
        if not items:
            return
        batch = pad_collate([(item["tokens"], None, k) for k, item in enumerate(items)], pad_id=dm.pad_id)
        generated = pl_module.generate(batch.tokens.to(pl_module.device), batch.lengths, self.max_new,
                                       self.temperature, eos_id=getattr(dm, "eos_id", None), seed=self.seed,
                                       banned=banned_ids(dm))
        rows = [(item["input"], dm.render_prediction(item, {"generated": generated[k].cpu()})["output"])
                for k, item in enumerate(items)]
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"=== epoch {trainer.current_epoch} (step {trainer.global_step})\n")
            for prompt, text in rows:
                f.write(f"--- {prompt!r}\n{text}\n")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_text(key="samples", columns=["epoch", "prompt", "sample"],
                                data=[[trainer.current_epoch, p, t] for p, t in rows])


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
        from rnnlab.models.music import plot_roll, roll_to_midi

        if (trainer.sanity_checking or not self.every_n_epochs or (trainer.current_epoch + 1) % self.every_n_epochs
                or trainer.global_rank != 0 or not hasattr(pl_module, "generate")):
            return
        roll = pl_module.generate(self.steps, None, self.temperature, self.seed).cpu()
        folder = run_dir(trainer) / "samples"
        stem = folder / f"epoch{trainer.current_epoch}"
        roll_to_midi(roll, stem.with_suffix(".mid"))
        png = plot_roll(roll, stem.with_suffix(".png"), title=f"epoch {trainer.current_epoch}")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image(key="samples/piano_roll", images=[str(png)], caption=[f"epoch {trainer.current_epoch}"])
