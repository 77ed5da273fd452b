"""After ``test``: the confusion matrix as a PNG and scikit-learn's classification report, in the run folder."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist

from rnnlab.runs import run_dir


def plot_confusion(matrix, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = matrix / matrix.sum(1, keepdims=True).clip(min=1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90 if n > 4 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7 if n > 8 else 9,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class ConfusionMatrix(L.Callback):
    """Collects the model's ``test_step`` outputs (``{"preds", "target"}``) and writes ``confusion_matrix.png`` and
    ``classification_report.txt`` (per-class precision, recall, F1) to the run folder; logs the picture to W&B."""

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._preds, self._targets = [], []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if isinstance(outputs, dict) and "preds" in outputs:
            self._preds.append(outputs["preds"].detach().cpu())
            self._targets.append(outputs["target"].detach().cpu())

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        labels = getattr(trainer.datamodule, "labels", None)
        if not self._preds or not labels:
            return
        preds, targets = torch.cat(self._preds), torch.cat(self._targets)
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            parts: list = [None] * trainer.world_size
            dist.all_gather_object(parts, (preds, targets))
            preds, targets = torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])
        if not trainer.is_global_zero:
            return
        from sklearn.metrics import classification_report, confusion_matrix

        ids = list(range(len(labels)))
        matrix = confusion_matrix(targets.numpy(), preds.numpy(), labels=ids)
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        report = classification_report(
            targets.numpy(), preds.numpy(), labels=ids, target_names=labels, digits=4, zero_division=0
        )
        (folder / "classification_report.txt").write_text(report)
        png = folder / "confusion_matrix.png"
        plot_confusion(
            matrix, labels, png, f"test: {len(targets)} examples, accuracy {(preds == targets).float().mean():.4f}"
        )
        self.last = {"matrix": matrix, "report": report, "png": png}
        logger = trainer.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key="test/confusion_matrix", images=[str(png)])
