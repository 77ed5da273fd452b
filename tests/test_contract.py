"""rnnlab.contract's prediction rows: the one schema that `rnnlab predict` writes and `rnnlab serve` answers."""

from __future__ import annotations

import pytest

from rnnlab.contract import (
    CaptionRow,
    ClassificationRow,
    ForecastRow,
    GenerationRow,
    MusicRow,
    NeighboursRow,
    TaggingRow,
    TranslationRow,
    check_row,
    row_fields,
)
from rnnlab.data.base import SequenceDataModule
from rnnlab.errors import RnnlabError


def test_a_row_has_only_its_types_fields_each_of_its_type():
    row = {"line": 1, "input": "Dostoevsky", "label": "Russian", "prob": 0.93, "top": "Russian 0.93"}
    assert check_row(ClassificationRow, row) is row
    check_row(MusicRow, {"input": "", "steps": 64, "pitch_min": None, "in_key_share": 1})  # an int is a float
    with pytest.raises(RnnlabError, match="'lable' is not in ClassificationRow"):
        check_row(ClassificationRow, {"input": "x", "lable": "a"})
    with pytest.raises(RnnlabError, match="'prob' of ClassificationRow must be float, got str"):
        check_row(ClassificationRow, {"input": "x", "prob": "0.9"})
    with pytest.raises(RnnlabError, match="steps' of MusicRow must be int, got bool"):
        check_row(MusicRow, {"input": "x", "steps": True})
    with pytest.raises(RnnlabError, match="needs its input"):
        check_row(TaggingRow, {"output": "a/DT"})


def test_every_datamodule_that_predicts_names_a_row_type_and_its_fields_are_described():
    import importlib

    for module in ("captions", "charlm", "conll2000", "imdb", "music", "names", "poetry", "segmentation", "word2vec"):
        importlib.import_module(f"rnnlab.data.{module}")
    importlib.import_module("rnnlab.data.translation")
    importlib.import_module("rnnlab.data.timeseries")

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    kinds = {dm: dm.prediction_row for dm in subclasses(SequenceDataModule)}
    for dm in kinds:  # a DataModule that renders its own rows names their type beside them
        if "render_prediction" in vars(dm):
            assert "prediction_row" in vars(dm), f"{dm.__name__} renders rows but names no prediction_row"
    used = set(kinds.values())
    rows = {
        ClassificationRow,
        TaggingRow,
        GenerationRow,
        TranslationRow,
        CaptionRow,
        MusicRow,
        ForecastRow,
        NeighboursRow,
    }
    assert rows <= used
    for name in ("TranslationDataModule", "PianoRollDataModule", "TimeSeriesDataModule", "CoNLL2000DataModule"):
        (cls,) = [c for c in kinds if c.__name__ == name]
        assert kinds[cls] is not ClassificationRow, name
    assert row_fields(MusicRow)["pitch_min"] == "int | None" and row_fields(ForecastRow)["forecast"] == "dict"
