"""Shared fixtures: tiny datasets written in their official formats, and a clean environment for every test."""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("PYTHONHASHSEED", "0")

POS_WORDS = ["great", "wonderful", "superb", "loved", "brilliant", "moving", "best", "fun"]
NEG_WORDS = ["awful", "boring", "worst", "hated", "terrible", "dull", "waste", "bad"]
FILLER = ["the", "movie", "film", "was", "a", "plot", "actor", "and", "it", "this", "story", "scene"]


def review(rng: random.Random, positive: bool, n_words: int) -> str:
    words = [rng.choice(FILLER) for _ in range(n_words)]
    for _ in range(max(1, n_words // 5)):
        words[rng.randrange(n_words)] = rng.choice(POS_WORDS if positive else NEG_WORDS)
    return " ".join(words).capitalize() + ".<br /><br />" + rng.choice(["Really!", "Yes.", "Hmm..."])


def write_imdb_archive(path: Path, n_train: int = 40, n_test: int = 20, n_unsup: int = 10, seed: int = 0,
                       extra: dict[str, str] | None = None) -> Path:
    """An ``aclImdb_v1.tar.gz`` in the official layout: ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, text: str) -> None:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for split, n in (("train", n_train), ("test", n_test)):
            for label in ("pos", "neg"):
                for i in range(n):
                    rating = rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                    add(f"aclImdb/{split}/{label}/{i}_{rating}.txt", review(rng, label == "pos", rng.randint(5, 40)))
            add(f"aclImdb/{split}/urls_pos.txt", "http://www.imdb.com/title/tt0000001/usercomments\n")
        for i in range(n_unsup):
            add(f"aclImdb/train/unsup/{i}_0.txt", review(rng, rng.random() < 0.5, 20))
        for name, text in (extra or {}).items():
            add(name, text)
    return path


@pytest.fixture(scope="session")
def local_data(tmp_path_factory) -> Path:
    """A ``$RNNLAB_LOCAL_DATA`` folder with tiny official-format copies."""
    root = tmp_path_factory.mktemp("local_data")
    write_imdb_archive(root / "imdb" / "aclImdb_v1.tar.gz")
    return root


@pytest.fixture
def env(local_data, tmp_path, monkeypatch) -> Path:
    """Run in a fresh working directory with the local copies; returns that directory."""
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(local_data))
    monkeypatch.chdir(tmp_path)
    return tmp_path
