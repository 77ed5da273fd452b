"""IMDB DataModule on a tiny archive in the official layout."""

import pytest
import torch

from conftest import write_imdb_archive
from rnnlab.data.imdb import IMDBDataModule, read_archive, truncate
from rnnlab.errors import RnnlabError


def test_reads_official_layout(tmp_path):
    path = write_imdb_archive(tmp_path / "a.tar.gz", n_train=6, n_test=4, n_unsup=3)
    raw = read_archive(path, unsup=True)
    reviews = {k: len(v) for k, v in raw.items() if not k.startswith("movies/")}
    assert reviews == {"train/pos": 6, "train/neg": 6, "test/pos": 4, "test/neg": 4, "train/unsup": 3}
    assert raw["movies/train/pos"] == ["tt0000000"] * 3 + ["tt0000001"] * 3
    assert "train/unsup" not in read_archive(path)


def _movies_of(dm, split: str) -> set:
    """The movies of a split's reviews (the fixture's texts are unique, so a text names its review)."""
    from rnnlab.data.imdb import review_movies

    raw = dm._read()
    movie_of = {
        text: movie
        for label in dm.labels
        for (_, _, text), movie in zip(raw[f"train/{label}"], review_movies(raw, "train", label))
    }
    return {movie_of[text] for text, _ in dm.read_splits()[0][split]}


def test_validation_holds_out_whole_movies_with_balanced_classes(env):
    dm = IMDBDataModule(val_size=20, batch_size=8, seed=1)
    dm.setup("fit")
    n_val = len(dm.datasets["val"])
    assert 20 <= n_val <= 22 and len(dm.datasets["train"]) == 80 - n_val and len(dm.datasets["test"]) == 40
    assert abs(dm.datasets["val"].targets.sum().item() - n_val / 2) <= 2, "classes balanced"
    assert not _movies_of(dm, "val") & _movies_of(dm, "train"), "no movie on both sides"
    other = IMDBDataModule(val_size=20, batch_size=8, seed=2, root="data2")
    other.setup("fit")
    assert _movies_of(other, "val") != _movies_of(dm, "val"), "the seed picks the movies"


def test_grouped_split_never_splits_a_group():
    from rnnlab.data.classification import grouped_split

    groups = [i // 4 for i in range(400)]
    labels = [(i // 4) % 2 if i % 4 else 1 - (i // 4) % 2 for i in range(400)]
    held, rest = grouped_split(groups, labels, 100, seed=0)
    assert sorted(held + rest) == list(range(400)) and 100 <= len(held) <= 103
    assert not {groups[i] for i in held} & {groups[i] for i in rest}
    assert abs(sum(labels[i] for i in held) - len(held) / 2) <= 3


def test_random_validation_split_is_stratified_seeded_and_cached(env, monkeypatch):
    dm = IMDBDataModule(val_size=20, batch_size=8, seed=1, val_split="random")
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes == {"train": 60, "val": 20, "test": 40}
    assert dm.datasets["val"].targets.sum().item() == 10, "stratified: half of val is positive"
    calls = []
    monkeypatch.setattr(IMDBDataModule, "build", lambda self, state: calls.append(1))
    again = IMDBDataModule(val_size=20, batch_size=8, seed=1, val_split="random")
    again.setup("fit")  # served from the encoded cache: no parsing, no tokenising
    assert not calls
    assert [s.tolist() for s in again.datasets["val"].sequences] == [s.tolist() for s in dm.datasets["val"].sequences]
    other = IMDBDataModule(val_size=20, batch_size=8, seed=2, val_split="random")
    with pytest.raises(TypeError):  # a different seed is a different split: it must be rebuilt, not served stale
        other.setup("fit")


def test_vocabulary_is_built_on_the_training_split_only(local_data, tmp_path, monkeypatch):
    write_imdb_archive(
        tmp_path / "local" / "imdb" / "aclImdb_v1.tar.gz",
        extra={
            "aclImdb/test/pos/999_10.txt": "zyzzyvaword appears only in the test set",
        },
    )
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "local"))
    monkeypatch.chdir(tmp_path)
    dm = IMDBDataModule(val_size=10, min_freq=1)
    dm.setup("fit")
    assert dm.vocab.token_to_id("zyzzyvaword") is None
    assert dm.vocab.token_to_id("great") is not None  # training words are in it
    train_ids = {i for s in dm.datasets["train"].sequences for i in s.tolist()}
    val_only = {i for s in dm.datasets["val"].sequences for i in s.tolist()} - train_ids
    assert val_only <= {dm.vocab.unk_id}, "validation words unseen in train map to <unk>"
    assert dm.vocab.split("GREAT film!<br /><br />Don't") == ["great", "film", "!", "don", "'", "t"]


def test_truncation_keeps_head_tail_or_both():
    seq = torch.arange(10)
    assert truncate(seq, 4, "head").tolist() == [0, 1, 2, 3]
    assert truncate(seq, 4, "tail").tolist() == [6, 7, 8, 9]
    assert truncate(seq, 4, "both").tolist() == [0, 7, 8, 9]
    assert truncate(seq, None, "both").tolist() == list(range(10))
    with pytest.raises(RnnlabError, match="truncation"):
        IMDBDataModule(truncation="middle")


def test_max_length_applies_and_batches_have_lengths(env):
    dm = IMDBDataModule(val_size=10, max_length=12, batch_size=16)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.tokens.shape[0] <= 16 and batch.tokens.shape[1] <= 12
    assert batch.lengths.max() == batch.tokens.shape[1] and batch.target.shape == (batch.tokens.shape[0],)
    assert (batch.tokens[torch.arange(len(batch)), batch.lengths - 1] != 0).all()


def test_state_dict_round_trip_and_mismatch_is_refused(env):
    dm = IMDBDataModule(val_size=10)
    dm.setup("fit")
    state = dm.state_dict()
    fresh = IMDBDataModule()
    fresh.load_state_dict(state)
    assert fresh.vocab_size == dm.vocab_size and fresh.labels == ["neg", "pos"]
    assert fresh.vocab.encode(["great movie"]) == dm.vocab.encode(["great movie"])
    other = IMDBDataModule(val_size=10, max_vocab=12)
    other.setup("fit")
    with pytest.raises(RnnlabError, match="vocab_from"):
        other.load_state_dict(state)


def test_missing_checkpoint_for_vocab_is_a_clear_error(env):
    with pytest.raises(RnnlabError, match="not found"):
        _ = IMDBDataModule(vocab_from="nope.ckpt").vocab_size
