"""word2vec: pair generation, subsampling, negatives, the loss, learning, export and use by the IMDB classifier."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.word2vec import (
    PairStream,
    Word2VecDataModule,
    keep_probabilities,
    make_pairs,
    subsample,
    window_contexts,
)
from rnnlab.embeddings import align_embeddings, export_embeddings, load_embeddings
from rnnlab.errors import RnnlabError
from rnnlab.models.word2vec import Word2Vec, negative_sampling_loss, noise_distribution

ROOT = Path(__file__).resolve().parents[1]


def test_window_pairs_stay_in_window_and_document():
    g = torch.Generator().manual_seed(0)
    doc = torch.repeat_interleave(torch.arange(50), torch.randint(1, 30, (50,), generator=g))
    n = len(doc)
    ids = torch.arange(n)  # id = position, so a pair tells its distance
    context = window_contexts(ids, doc, window=4, generator=g)
    centre, ctx = make_pairs(ids, context, "skipgram")
    dist = (ctx - centre).abs()
    assert len(centre) > 0 and (dist >= 1).all() and (dist <= 4).all()
    assert (doc[centre] == doc[ctx]).all()
    # the dynamic radius: a neighbour at distance d is used with probability (window - d + 1) / window
    full = make_pairs(ids, window_contexts(ids, doc, 4, dynamic=False), "skipgram")
    for d in (1, 4):
        used = int((dist == d).sum()) / int(((full[1] - full[0]).abs() == d).sum())
        assert abs(used - (4 - d + 1) / 4) < 0.06, (d, used)
    # without the dynamic radius every same-document neighbour within the window is a pair, exactly once
    expected = {(i, j) for i in range(n) for j in range(max(0, i - 4), min(n, i + 5)) if j != i and doc[i] == doc[j]}
    assert set(zip(full[0].tolist(), full[1].tolist())) == expected and len(full[0]) == len(expected)
    # CBOW: one row per position with context, its window row holding the same words
    c_centre, c_window = make_pairs(ids, window_contexts(ids, doc, 4, dynamic=False), "cbow")
    assert c_window.shape[1] == 8
    for i in range(0, len(c_centre), 37):
        row = {int(x) for x in c_window[i] if x >= 0}
        assert row == {j for (c, j) in expected if c == int(c_centre[i])}


def test_subsampling_keeps_words_with_the_formula_probability():
    counts = torch.tensor([0, 0, 100_000, 10_000, 1_000, 100])
    t = 1e-3
    keep = keep_probabilities(counts, t)
    f = counts[2:].double() / counts.sum()
    assert torch.allclose(keep[2:], torch.clamp(torch.sqrt(t / f) + t / f, max=1.0))
    assert keep[5] == 1.0 and keep[2] < 0.2
    ids = torch.repeat_interleave(torch.arange(6), counts)
    kept, _ = subsample(ids, torch.zeros_like(ids), keep, torch.Generator().manual_seed(1))
    for w in (2, 3, 4):
        n, p = int(counts[w]), float(keep[w])
        observed = int((kept == w).sum())
        assert abs(observed - n * p) < 5 * math.sqrt(n * p * (1 - p)) + 1, (w, observed, n * p)
    assert int((kept == 5).sum()) == 100  # rare words are always kept
    assert torch.equal(keep_probabilities(counts, 0.0), torch.ones(6, dtype=torch.float64))


def test_negatives_follow_unigram_to_the_075():
    counts = torch.tensor([50, 50, 1000, 300, 100, 10, 1])
    model = Word2Vec(vocab_size=7)
    model.noise.copy_(noise_distribution(counts))
    expected = counts.double() ** 0.75
    expected[:2] = 0
    expected /= expected.sum()
    assert torch.allclose(model.noise.double(), expected, atol=1e-6)
    draws = model.sample_negatives(40_000, 5, torch.Generator().manual_seed(0))
    assert draws.shape == (40_000, 5) and draws.min() >= 2  # <pad>/<unk> are never noise words
    freq = torch.bincount(draws.flatten(), minlength=7).double() / draws.numel()
    assert (freq - expected).abs().max() < 0.005


def test_loss_equals_the_formula_by_hand():
    v = torch.tensor([[0.5, -1.0]])
    u_pos = torch.tensor([[1.0, 0.2]])
    u_neg = torch.tensor([[[0.3, 0.4], [-1.0, 2.0]]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    by_hand = -(
        math.log(sig(0.5 * 1.0 - 1.0 * 0.2)) + math.log(1 - sig(0.5 * 0.3 - 1.0 * 0.4)) + math.log(1 - sig(-0.5 - 2.0))
    )
    assert negative_sampling_loss(v, u_pos, u_neg).item() == pytest.approx(by_hand, rel=1e-6)


def test_streams_shard_across_ranks_and_change_per_epoch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 40, (60,), generator=g)
    ids = torch.randint(2, 50, (int(lengths.sum()),), generator=g)
    keep = torch.ones(50, dtype=torch.float64)
    args = dict(mode="skipgram", window=3, batch_size=64, seed=7, chunk_tokens=300)
    single = list(PairStream(ids, lengths, keep, **args))
    ranks = [list(PairStream(ids, lengths, keep, rank=r, world=2, **args)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) // 2  # equal counts under DDP (or it hangs)
    for k in range(len(ranks[0])):  # rank r takes batches r, r + 2, ... of the same stream: disjoint, whole
        assert torch.equal(ranks[0][k][0], single[2 * k][0]) and torch.equal(ranks[1][k][1], single[2 * k + 1][1])
    again = PairStream(ids, lengths, keep, **args)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, single))  # deterministic per (seed, epoch)
    again.set_epoch(1)
    assert not torch.equal(next(iter(again))[0], single[0][0])  # a new shuffle and window draw each epoch


def cluster_corpus(path, n_docs: int = 400, seed: int = 0):
    """Two topics whose words never share a document: their vectors must separate."""
    rng = random.Random(seed)
    topics = [["apple", "banana", "cherry", "grape", "melon"], ["engine", "wheel", "brake", "gear", "piston"]]
    lines = [" ".join(rng.choice(topics[i % 2]) for _ in range(rng.randint(8, 20))) for i in range(n_docs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return topics


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_trained_vectors_separate_two_clusters(env, mode):
    topics = cluster_corpus(env / "corpus.txt")
    main(
        [
            "fit",
            "--model=rnnlab.models.Word2Vec",
            f"--model.mode={mode}",
            "--model.embedding_dim=16",
            "--model.negatives=3",
            "--model.lr=0.02",
            "--model.export_path=vectors/w2v.pt",
            "--model.probe_words=[apple]",
            "--data=rnnlab.data.word2vec.Word2VecDataModule",
            "--data.corpus=corpus.txt",
            f"--data.mode={mode}",
            "--data.min_count=1",
            "--data.val_docs=20",
            "--data.batch_size=128",
            "--data.subsample_t=0",
            "--trainer.max_epochs=4",
            "--trainer.enable_progress_bar=false",
            "--checkpoint.monitor=val/loss",
            "--checkpoint.mode=min",
            "--early_stopping.monitor=val/loss",
            "--early_stopping.mode=min",
            "--seed_everything=0",
        ]
    )
    words, vectors = load_embeddings(env / "vectors" / "w2v.pt")
    index = {w: i for i, w in enumerate(words)}
    unit = torch.nn.functional.normalize(vectors, dim=1)

    def mean_cos(a, b):
        return float(torch.stack([unit[index[x]] @ unit[index[y]] for x in a for y in b if x != y]).mean())

    within = (mean_cos(topics[0], topics[0]) + mean_cos(topics[1], topics[1])) / 2
    across = mean_cos(topics[0], topics[1])
    assert within > across + 0.5, (within, across)
    text_words, text_vectors = load_embeddings(env / "vectors" / "w2v.txt")  # the word2vec text format agrees
    assert text_words == words and torch.allclose(text_vectors, vectors, atol=1e-5)


def test_export_load_and_align(tmp_path):
    words = ["the", "good", "bad", "zebra"]
    vectors = torch.randn(4, 6)
    pt, txt = export_embeddings(tmp_path / "v.pt", ["<pad>", "<unk>", *words], torch.cat([torch.zeros(2, 6), vectors]))
    assert txt.read_text().splitlines()[0] == "4 6"
    for path in (pt, txt):
        got_words, got = load_embeddings(path)
        assert got_words == words and torch.allclose(got, vectors, atol=1e-5)
    weight = torch.empty(5, 6)
    found = align_embeddings(["<pad>", "<unk>", "good", "unseen", "the"], words, vectors, weight, pad_id=0)
    assert found == 2
    assert torch.equal(weight[2], vectors[1]) and torch.equal(weight[4], vectors[0]) and not weight[0].any()
    with pytest.raises(RnnlabError, match="embedding_dim: 6"):
        align_embeddings(["<pad>"], words, vectors, torch.empty(1, 8))
    with pytest.raises(RnnlabError, match="not found: train them first"):
        load_embeddings(tmp_path / "missing.pt")
    (tmp_path / "bad.txt").write_text("2 3\nfoo 1 2 3\nbar 1 2\n")
    with pytest.raises(RnnlabError, match="bad.txt:3: expected a word and 3 numbers"):
        load_embeddings(tmp_path / "bad.txt")


def test_imdb_classifier_starts_from_word2vec_vectors(env):
    """word2vec on the IMDB fixture's train + unsup reviews, then the classifier with frozen vectors: its rows are
    the exported vectors of the same words."""
    common = ["--trainer.enable_progress_bar=false", "--seed_everything=0"]
    main(
        [
            "fit",
            "--model=rnnlab.models.Word2Vec",
            "--model.embedding_dim=8",
            "--model.export_path=w2v/imdb.pt",
            "--data=rnnlab.data.word2vec.Word2VecDataModule",
            "--data.corpus=imdb",
            "--data.min_count=1",
            "--data.val_docs=10",
            "--data.batch_size=256",
            "--trainer.max_epochs=1",
            "--checkpoint.monitor=val/loss",
            "--checkpoint.mode=min",
            "--early_stopping.monitor=val/loss",
            "--early_stopping.mode=min",
            *common,
        ]
    )
    main(
        [
            "fit",
            "--model=rnnlab.models.SequenceClassifier",
            "--model.embedding_dim=8",
            "--model.rnn.hidden_size=8",
            "--model.pretrained_embeddings=w2v/imdb.pt",
            "--model.freeze_embeddings=true",
            "--data=rnnlab.data.imdb.IMDBDataModule",
            "--data.val_size=10",
            "--data.min_freq=1",
            "--data.batch_size=16",
            "--trainer.max_epochs=1",
            "--checkpoint.dirpath=ckpt",
            "--checkpoint.filename=final",
            *common,
        ]
    )
    words, vectors = load_embeddings(env / "w2v" / "imdb.pt")
    ckpt = torch.load(env / "ckpt" / "final.ckpt", weights_only=True)
    from rnnlab.data.text import Vocabulary

    vocab = Vocabulary.from_str(ckpt["IMDBDataModule"]["vocab"])
    weight = ckpt["state_dict"]["embedding.weight"]
    index = {w: i for i, w in enumerate(words)}
    shared = [w for w in vocab.tokenizer.get_vocab() if w in index]
    assert len(shared) > 20
    for w in shared:
        assert torch.equal(weight[vocab.token_to_id(w)], vectors[index[w]]), w


def test_mismatched_mode_and_bad_corpus_are_explained(env, capsys):
    (env / "c.txt").write_text("a b c\n" * 30)
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--model=rnnlab.models.Word2Vec",
                "--model.mode=cbow",
                "--data=rnnlab.data.word2vec.Word2VecDataModule",
                "--data.corpus=c.txt",
                "--data.min_count=1",
                "--data.val_docs=2",
                "--trainer.max_epochs=1",
                "--checkpoint.monitor=val/loss",
                "--early_stopping.monitor=val/loss",
            ]
        )
    assert "model.init_args.mode and data.init_args.mode" in capsys.readouterr().err
    with pytest.raises(RnnlabError, match="corpus nope.txt not found"):
        Word2VecDataModule(corpus="nope.txt").read_documents()
    with pytest.raises(RnnlabError, match="not more than val_docs"):
        Word2VecDataModule(corpus=str(env / "c.txt"), val_docs=100).build(None)
    tiny = Word2VecDataModule(corpus=str(env / "c.txt"), min_count=1, val_docs=2, batch_size=4096)
    tiny.setup("fit")
    with pytest.raises(RnnlabError, match="lower data.batch_size or data.subsample_t"):
        list(tiny._stream("train", shuffle=True))


def test_character_level_corpus_for_chinese(env):
    """``level: char`` makes every character a unit (Chinese text has no spaces); ``corpus: tang`` reads the poems."""
    dm = Word2VecDataModule(corpus="tang", level="char", min_count=1, val_docs=2)
    dm.setup("fit")
    words = set(dm.words)
    assert {"春", "月"} <= words and not any(len(w) > 1 for w in words - {"<pad>", "<unk>"})
    poems = dm.read_documents()
    assert sum(len(p) for p in poems) == int(dm.counts.sum()) + len(dm.datasets["val"]["ids"])


def test_tagger_starts_from_character_vectors(env):
    """The segmenter's unit embedding (characters and bigrams, one table) takes character vectors by unit."""
    chars = sorted(set("".join(["我們", "住在", "同一條", "巷子", "鄰居", "同學", "是", "也", "和", "他"])))
    vectors = torch.randn(len(chars), 8)
    export_embeddings(env / "chars.pt", chars, vectors)
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "sinica_cws_bilstm.yaml"),
            "--model.init_args.embedding_dim=8",
            "--model.init_args.rnn.hidden_size=8",
            "--model.init_args.pretrained_embeddings=chars.pt",
            "--model.init_args.freeze_embeddings=true",
            "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false",
            "--checkpoint.dirpath=ckpt",
            "--checkpoint.filename=final",
            "--checkpoint.monitor=val/f1",
        ]
    )
    ckpt = torch.load(env / "ckpt" / "final.ckpt", weights_only=True)
    from rnnlab.data.text import Vocabulary

    vocab = Vocabulary.from_str(ckpt["ChineseSegmentationDataModule"]["vocab"])
    weight = ckpt["state_dict"]["embedding.weight"]
    found = [c for c in chars if vocab.token_to_id(c) is not None]
    assert len(found) >= 10
    for i, c in enumerate(chars):
        if c in found:
            assert torch.equal(weight[vocab.token_to_id(c)], vectors[i]), c


def test_word2vec_trains_under_two_process_ddp(env):
    cluster_corpus(env / "corpus.txt")
    main(
        [
            "fit",
            "--model=rnnlab.models.Word2Vec",
            "--model.embedding_dim=8",
            "--model.export_path=vectors/ddp.pt",
            "--data=rnnlab.data.word2vec.Word2VecDataModule",
            "--data.corpus=corpus.txt",
            "--data.min_count=1",
            "--data.val_docs=20",
            "--data.batch_size=128",
            "--data.subsample_t=0",
            "--trainer.max_epochs=2",
            "--trainer.strategy=ddp_spawn",
            "--trainer.devices=2",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            "--checkpoint.monitor=val/loss",
            "--checkpoint.mode=min",
            "--early_stopping.monitor=val/loss",
            "--early_stopping.mode=min",
        ]
    )
    words, vectors = load_embeddings(env / "vectors" / "ddp.pt")
    assert "apple" in words and torch.isfinite(vectors).all()
    ckpt = torch.load(next((env / "runs").rglob("last.ckpt")), weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] > 0
    # dense gradients under DDP (NCCL cannot all-reduce sparse ones): Adam's state, not SparseAdam's
    assert "amsgrad" in ckpt["optimizer_states"][0]["param_groups"][0]


def test_evaluation_stream_splits_every_batch_across_ranks():
    lengths = torch.tensor([5, 7, 3])
    ids = torch.arange(2, 2 + int(lengths.sum()))
    keep = torch.ones(40, dtype=torch.float64)
    args = dict(mode="skipgram", window=2, batch_size=1000, seed=0, shuffle=False)
    whole = list(PairStream(ids, lengths, keep, **args))
    parts = [list(PairStream(ids, lengths, keep, rank=r, world=2, **args)) for r in (0, 1)]
    assert len(whole) == 1 and len(parts[0]) == len(parts[1]) == 1  # one batch: both ranks still evaluate
    assert torch.equal(torch.cat([parts[0][0][0], parts[1][0][0]]), whole[0][0])
