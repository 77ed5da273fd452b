"""Writes ``predict`` results, one row per input line, as JSONL or CSV (by the file suffix)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist

from rnnlab.contract import check_row
from rnnlab.errors import RnnlabError


class PredictionWriter(L.Callback):
    """After ``predict``: gathers every rank's outputs and writes ``output`` (``.jsonl`` or ``.csv``), one row per
    input line in input order. Lines the model cannot read (empty, no known symbol) get an ``error`` column instead
    of a prediction; the rest of the file is still predicted.

    Rows come from the DataModule's ``render_prediction(item, output)`` and are checked against its
    ``prediction_row`` type (:mod:`rnnlab.contract`; the server's rows are the same type); the model's
    ``predict_step`` returns a dict with an ``index`` tensor (input line numbers) and per-sample tensors.
    """

    def __init__(self, output: str = "predictions.jsonl") -> None:
        if Path(output).suffix not in (".jsonl", ".csv"):
            raise RnnlabError(f"prediction output must end in .jsonl or .csv, got {output!r}")
        self.output = output
        self.rows: list[dict] = []

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._outputs: list[dict] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for i in range(len(outputs["index"])):
            self._outputs.append({k: v[i].detach().cpu() if torch.is_tensor(v) else v[i] for k, v in outputs.items()})

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        outs = self._outputs
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list = [None] * trainer.world_size
            dist.all_gather_object(gathered, outs)
            outs = [o for part in gathered for o in part]
        if trainer.global_rank != 0:
            return
        dm = trainer.datamodule
        by_line = {int(o["index"]): o for o in outs}
        self.rows = []
        for line, item in enumerate(dm.predict_items, start=1):
            row = {"line": line, "input": item["input"]}
            if "error" in item:
                row["error"] = item["error"]
            elif line - 1 in by_line:
                row.update(dm.render_prediction(item, by_line[line - 1]))
                if "warning" in item:
                    row["warning"] = item["warning"]
            self.rows.append(check_row(dm.prediction_row, row))
        path = Path(self.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jsonl":
            with open(path, "w", encoding="utf-8") as f:
                for row in self.rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            fields = list(dict.fromkeys(k for row in self.rows for k in row))
            with open(path, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(self.rows)
        errors = sum("error" in r for r in self.rows)
        print(f"wrote {len(self.rows)} predictions to {path}" + (f" ({errors} lines with errors)" if errors else ""))
