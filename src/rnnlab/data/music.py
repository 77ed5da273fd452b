"""Polyphonic music as piano rolls: JSB Chorales (and the other Boulanger-Lewandowski 2012 corpora).

* ``jsb_chorales`` JSON edition (github czhuang/JSB-Chorales-dataset): ``{"train", "valid", "test"}`` -> chorales,
  each a list of time steps, each step the list of sounding MIDI pitches; ``jsb-chorales-quarter.json`` (the
  benchmark resolution) or ``jsb-chorales-16th.json``.
* The original pickles (``JSB Chorales.pickle``, ``Nottingham.pickle``, ``MuseData.pickle``, ``Piano-midi.de.pickle``):
  the same structure as a Python dict; ``pickle: <path>`` reads one.

A step becomes a multi-hot vector over the 88 piano keys (MIDI 21-108). The model reads steps ``< t`` (a silent
frame before the first) and predicts step ``t``: ``tokens [T, 88]`` = the roll shifted right by one,
``target [T, 88]`` = the roll.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import Tensor

from rnnlab.contract import MusicRow
from rnnlab.data.base import SequenceDataModule
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.sources import RemoteFile, Source, fetch, register
from rnnlab.errors import RnnlabError
from rnnlab.pianoroll import HIGH, KEYS, LOW

URL = "https://raw.githubusercontent.com/czhuang/JSB-Chorales-dataset/master/"


def _check(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RnnlabError(f"{path} is not JSON ({err}); download it again from {URL}{path.name}") from None
    if not isinstance(data, dict) or not {"train", "valid", "test"} <= set(data):
        raise RnnlabError(f"{path}: expected a JSON object with train, valid and test pieces")
    return ", ".join(f"{k} {len(data[k])} pieces" for k in ("train", "valid", "test"))


register(
    Source(
        "jsb_chorales",
        check=_check,
        files=(
            RemoteFile(
                "jsb-chorales-quarter.json",
                URL + "jsb-chorales-quarter.json",
                "2db9329f1881a1d3f49703ec556bf1d6f84b4f6c1d702c156536e93cf31e1c91",
            ),
            RemoteFile(
                "jsb-chorales-16th.json",
                URL + "jsb-chorales-16th.json",
                "8730aca7b64e7d29493733d1cf19fad4a5b351d8f1845e57dac27728104fd39f",
            ),
        ),
        homepage="https://github.com/czhuang/JSB-Chorales-dataset",
    )
)


class _PlainUnpickler(pickle.Unpickler):
    """Reads plain data only -- dicts, lists, tuples, numbers, strings -- and refuses every class or function a
    pickle names, so loading a file can run no code (``pickle.load`` can run any)."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}; only plain lists, dicts and numbers are read")


def read_plain_pickle(path: Path):
    """A Boulanger-Lewandowski corpus pickle (``{"train": [[[pitch, ...], ...], ...], ...}``), safely."""
    import io

    try:
        return _PlainUnpickler(io.BytesIO(path.read_bytes()), encoding="latin-1").load()
    except Exception as err:  # a corrupt or hostile pickle raises many kinds of errors
        raise RnnlabError(
            f"{path} is not a readable plain-data pickle ({type(err).__name__}: {err}); convert it to "
            f"the JSON edition ({{'train': [...], 'valid': [...], 'test': [...]}})"
        ) from None


def to_roll(steps: list, where: str = "") -> Tensor:
    """Pitch lists -> ``[T, 88]`` multi-hot. A pitch outside 21-108 or a malformed step is an error naming it."""
    roll = torch.zeros(len(steps), KEYS)
    for t, step in enumerate(steps):
        if not isinstance(step, (list, tuple)):
            raise RnnlabError(f"{where}, step {t}: expected a list of MIDI pitches, found {step!r}")
        for p in step:
            if not isinstance(p, (int, float)) or int(p) != p or not LOW <= p <= HIGH:
                raise RnnlabError(f"{where}, step {t}: pitch {p!r} is not a MIDI note in the piano range {LOW}-{HIGH}")
            roll[t, int(p) - LOW] = 1.0
    return roll


def from_roll(roll: Tensor) -> list[list[int]]:
    """``[T, 88]`` -> pitch lists (ascending)."""
    return [[int(k) + LOW for k in row.nonzero().flatten().tolist()] for row in (roll > 0.5)]


def read_corpus(data: dict, where: str) -> dict[str, list[Tensor]]:
    """``{"train"/"valid"/"test": [chorale: [step: [pitches]]]}`` -> ``{"train"/"val"/"test": [roll]}``."""
    out = {}
    for theirs, ours in (("train", "train"), ("valid", "val"), ("test", "test")):
        if theirs not in data:
            raise RnnlabError(f"{where}: no {theirs!r} split (found {sorted(data)})")
        out[ours] = [to_roll(piece, f"{where}, {theirs} piece {i}") for i, piece in enumerate(data[theirs])]
    return out


class TransposedRolls(SequenceDataset):
    """Training pieces, each drawn transposed by a random number of semitones in ``[-semitones, semitones]`` (notes
    pushed off the keyboard are dropped) -- the data augmentation musicians would expect to be harmless."""

    def __init__(self, inputs: list[Tensor], rolls: list[Tensor], semitones: int) -> None:
        super().__init__(inputs, rolls)
        self.semitones = semitones

    def __getitem__(self, i: int):
        x, y, i = super().__getitem__(i)
        k = int(torch.randint(-self.semitones, self.semitones + 1, ()))
        return shift(x, k), shift(y, k), i


def shift(roll: Tensor, k: int) -> Tensor:
    """``roll`` moved up ``k`` keys (down if negative); keys leaving the range are dropped."""
    if k == 0:
        return roll
    out = torch.zeros_like(roll)
    if k > 0:
        out[:, k:] = roll[:, :-k]
    else:
        out[:, :k] = roll[:, -k:]
    return out


class PianoRollDataModule(SequenceDataModule):
    """Piano rolls for next-step prediction; the official Boulanger-Lewandowski train / valid / test split.

    Args:
        resolution: ``quarter`` (the benchmark) or ``16th`` (JSB JSON edition).
        pickle: a Boulanger-Lewandowski pickle (e.g. ``Nottingham.pickle``) to read instead; read as plain data only
            (lists, dicts, numbers): a pickle that names any class or function is refused, so it runs no code.
        transpose: train on pieces transposed by a random ``[-transpose, transpose]`` semitones (0: as written).
        primer_steps: for ``predict``: steps of a given piece to continue from.
        output_dir: for ``predict``: where the MIDI files and piano-roll pictures go.
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule`.
    """

    name = "jsb_chorales"
    batch_layout = "features"  # batch.features: the previous steps' rolls
    predict_examples = ("scratch", "test:0")
    predict_bad_example = "chorale"

    def __init__(
        self,
        resolution: Literal["quarter", "16th"] = "quarter",
        pickle: Optional[str] = None,
        transpose: int = 0,
        primer_steps: int = 8,
        output_dir: str = "samples",
        **kwargs,
    ) -> None:
        kwargs.setdefault("batch_size", 16)
        super().__init__(**kwargs)
        if resolution not in ("quarter", "16th"):
            raise RnnlabError(f"resolution must be 'quarter' or '16th', got {resolution!r}")
        self.resolution, self.pickle = resolution, pickle
        self.primer_steps, self.output_dir, self.transpose = primer_steps, output_dir, transpose
        if pickle:
            self.name = f"pianoroll_{Path(pickle).stem.replace(' ', '_').replace('.', '_')}"
        self.labels: list[str] = []

    def encoding_args(self) -> dict:
        if self.pickle and Path(self.pickle).is_file():
            return {"pickle": [str(Path(self.pickle).resolve()), Path(self.pickle).stat().st_mtime]}
        return {"resolution": self.resolution}

    def read(self) -> dict[str, list[Tensor]]:
        if self.pickle:
            path = Path(self.pickle)
            if not path.is_file():
                raise RnnlabError(f"pickle {path} not found: give the path of e.g. 'JSB Chorales.pickle'")
            data = read_plain_pickle(path)
            if not isinstance(data, dict):
                raise RnnlabError(f"{path}: expected a dict of train/valid/test pieces")
            return read_corpus(data, str(path))
        file = f"jsb-chorales-{self.resolution}.json"
        path = fetch(self.name, self.root, self.local_dir)[file]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RnnlabError(f"{path} is not JSON ({err}); download it again from {URL}{file}") from None
        return read_corpus(data, file)

    def build(self, state: Optional[dict]) -> dict:
        splits = self.read()
        return {"state": state or {"labels": [], "keys": KEYS}, "splits": splits}

    def make_dataset(self, split: str, data: list[Tensor]) -> SequenceDataset:
        rolls = [r for r in data if len(r)]
        inputs = [torch.cat([torch.zeros(1, KEYS), r[:-1]]) for r in rolls]  # step t reads steps < t
        if split == "train" and self.transpose:
            return TransposedRolls(inputs, rolls, self.transpose)
        return SequenceDataset(inputs, rolls)

    def on_state(self, state: dict) -> None:
        self.labels = []

    # ----------------------------------------------------------------- predict
    def encode_predict(self, texts: list[str]) -> list[dict]:
        """Each input: ``""``/``"scratch"`` (a new piece) or ``"<split>:<n>"`` (continue the first ``primer_steps``
        steps of piece ``n`` of ``train``/``val``/``test``)."""
        pieces = None
        items = []
        for raw in texts:
            spec = raw.strip()
            if spec in ("", "scratch"):
                items.append({"input": raw, "tokens": torch.zeros(1, KEYS), "primer": torch.zeros(0, KEYS)})
                continue
            split, _, n = spec.partition(":")
            if pieces is None:
                pieces = self.read()
            if split not in pieces or not n.isdigit() or int(n) >= len(pieces[split]):
                sizes = ", ".join(f"{k}: 0-{len(v) - 1}" for k, v in pieces.items())
                items.append(
                    {"input": raw, "error": f"expected 'scratch' or '<split>:<piece>' ({sizes}), got {spec!r}"}
                )
                continue
            primer = pieces[split][int(n)][: self.primer_steps]
            items.append({"input": raw, "tokens": torch.zeros(1, KEYS), "primer": primer})
        return items

    def predict_dataloader(self):
        from torch.utils.data import DataLoader

        self.predict_items = self.encode_predict(self.read_predict_inputs())
        valid = [i for i, item in enumerate(self.predict_items) if "primer" in item]
        return DataLoader(
            [(self.predict_items[i]["primer"], i) for i in valid], batch_size=None, collate_fn=lambda x: x
        )

    prediction_row = MusicRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        from rnnlab.pianoroll import plot_roll, roll_stats, roll_to_midi

        line = int(output["index"]) + 1
        roll = output["roll"]
        stem = Path(self.output_dir) / f"piece_{line}"
        midi = roll_to_midi(roll, stem.with_suffix(".mid"))
        png = plot_roll(
            roll, stem.with_suffix(".png"), title=item["input"] or "scratch", primer_steps=len(item["primer"])
        )
        return {"midi": str(midi), "png": str(png), "steps": len(roll), **roll_stats([roll[len(item["primer"]) :]])}

    @property
    def num_features(self) -> int:
        return KEYS
