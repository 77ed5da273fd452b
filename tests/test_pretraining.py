"""IMDB from IMDB alone: the bidirectional word language model, its data, and the classifier fine-tuned from it."""

from pathlib import Path

import pytest
import torch

from conftest import predict_rows, rnn_args
from rnnlab.cli import main
from rnnlab.contract import IGNORE_INDEX, Batch
from rnnlab.errors import RnnlabError
from rnnlab.models import LanguageModel, SequenceClassifier
from rnnlab.nn.dropout import LockedDropout, drop_words
from rnnlab.nn.recurrent import RecurrentSpec

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
SMALL = ["--model.init_args.embedding_dim=16", "--model.init_args.rnn.hidden_size=16"]


def bilm(**kwargs) -> LanguageModel:
    torch.manual_seed(0)
    args = dict(embedding_dim=8, hidden_size=16, num_layers=1, bidirectional=True, adaptive_cutoffs=[10, 30])
    return LanguageModel(50, **rnn_args({**args, **kwargs})).eval()


@pytest.mark.parametrize("impl", ["torch", "handwritten"])
def test_each_direction_of_the_bidirectional_lm_never_sees_its_target(impl):
    model = bilm(impl=impl)
    tokens = torch.randint(2, 50, (3, 9))
    lengths = torch.tensor([9, 7, 4])
    out, _ = model.features(tokens, lengths)
    changed = tokens.clone()
    changed[:, 3] = (tokens[:, 3] + 1 - 2) % 48 + 2  # another word at position 3
    out2, _ = model.features(changed, lengths)
    d = model.head_size
    assert torch.equal(out[:, :3, :d], out2[:, :3, :d]), "the forward half before position 3 cannot see it"
    for b, n in enumerate(lengths.tolist()):  # the backward half after position 3 (and before the end) neither
        assert torch.equal(out[b, 4:n, d:], out2[b, 4:n, d:])
    assert not torch.equal(out[:, 3:, :d], out2[:, 3:, :d]) and not torch.equal(out[0, :3, d:], out2[0, :3, d:])


def test_bidirectional_loss_is_the_mean_of_next_and_previous_word_nll():
    model = bilm()
    logged = {}
    model.log = lambda name, value, **kw: logged.setdefault(name, float(value.detach()))
    tokens = torch.randint(2, 50, (2, 7))
    target = torch.cat([tokens[:, 1:], torch.randint(2, 50, (2, 1))], 1)
    target[1, 5:] = IGNORE_INDEX  # a shorter second row
    lengths = torch.tensor([7, 5])
    loss = model._step(Batch(tokens=tokens, lengths=lengths, target=target, index=torch.arange(2)), "val")
    out, _ = model.features(tokens, lengths)
    logp_f = model.scores(out[..., :16])
    logp_b = model.scores(out[..., 16:])
    fwd = [-logp_f[b, t, target[b, t]] for b in range(2) for t in range(int(lengths[b]))]
    bwd = [-logp_b[b, t, tokens[b, t - 1]] for b in range(2) for t in range(1, int(lengths[b]))]
    expected = (torch.stack(fwd).mean() + torch.stack(bwd).mean()) / 2
    assert torch.allclose(loss, expected, atol=1e-5)
    assert torch.allclose(logp_f.exp().sum(-1), torch.ones(2, 7), atol=1e-5), "adaptive softmax: a distribution"


def test_bidirectional_lm_still_generates_from_its_forward_half():
    model = bilm()
    a = model.generate(torch.tensor([[5, 6, 7]]), max_new=6, temperature=0, banned=(0, 1))
    b = model.generate(torch.tensor([[5, 6, 7]]), max_new=6, temperature=0, banned=(0, 1))
    assert torch.equal(a, b) and a.shape == (1, 6) and (a >= 2).all()


def test_bad_language_model_settings_are_refused():
    with pytest.raises(RnnlabError, match="num_layers: 1"):
        LanguageModel(50, rnn=RecurrentSpec(num_layers=2, bidirectional=True))
    with pytest.raises(RnnlabError, match="adaptive_cutoffs"):
        LanguageModel(50, adaptive_cutoffs=[30, 10])
    assert LanguageModel(50, adaptive_cutoffs=[10, 50, 80]).head.cutoffs == [10, 50], "ranks past the vocabulary go"
    with pytest.raises(RnnlabError, match="tie_weights"):
        LanguageModel(50, adaptive_cutoffs=[10], tie_weights=True)
    with pytest.raises(RnnlabError, match="at least 64"):
        LanguageModel(50, adaptive_cutoffs=[5, 10, 20], rnn=RecurrentSpec(hidden_size=32))


def test_locked_dropout_keeps_one_mask_per_sequence_and_word_dropout_spares_padding():
    torch.manual_seed(0)
    drop = LockedDropout(0.5).train()
    y = drop(torch.ones(4, 6, 10))
    assert torch.equal(y, y[:, :1].expand_as(y)) and set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(torch.ones(2, 3, 4)), torch.ones(2, 3, 4))
    tokens = torch.tensor([[5] * 50 + [0] * 50])
    dropped = drop_words(tokens, 0.5, training=True)
    assert (dropped[0, 50:] == 0).all() and 10 < int((dropped[0, :50] == 1).sum()) < 40
    assert torch.equal(drop_words(tokens, 0.5, training=False), tokens)


def test_imdb_language_model_data_holds_out_the_classifier_validation_and_never_reads_test(env):
    from rnnlab.data.imdb import IMDBDataModule, IMDBLanguageModelDataModule
    from rnnlab.data.text import EOS

    classifier_data = IMDBDataModule(val_size=20, unsup=True)
    splits, _ = classifier_data.read_splits()
    lm = IMDBLanguageModelDataModule(val_size=20, seq_len=8, batch_size=4)
    lm.setup("fit")
    eos = lm.vocab.token_to_id(EOS)
    val = torch.cat([torch.tensor([*ids, eos]) for ids in lm.vocab.encode([t for t, _ in splits["val"]])])
    assert torch.equal(lm.datasets["val"].rows[: len(val) - 1].long(), val[: len(val) - 1])
    train_stream = lm.datasets["train"].rows
    n_reviews = int((train_stream == eos).sum())
    assert n_reviews in (len(splits["train"]) + 10, len(splits["train"]) + 9), "train reviews + the unlabelled"
    test_only = {w for t, _ in splits["test"] for w in lm.vocab.split(t)} - {
        w for t, _ in splits["train"] + splits["val"] for w in lm.vocab.split(t)
    }
    assert all(lm.vocab.token_to_id(w) is None for w in test_only)
    batch = next(iter(lm.train_dataloader()))
    assert batch.tokens.shape == (4, 8) and torch.equal(batch.tokens[:, 1:], batch.target[:, :-1])
    assert lm.encode_predict([""])[0]["error"].startswith("empty prompt")


def test_classifier_loads_the_encoder_and_fine_tunes_in_stages(env, tmp_path, monkeypatch):
    from rnnlab.data.imdb import IMDBDataModule

    lm = LanguageModel(40, embedding_dim=8, rnn=RecurrentSpec(hidden_size=6, num_layers=1, bidirectional=True))
    words = ["<pad>", "<unk>", "<eos>"] + [f"w{i}" for i in range(37)]
    vocab_json = {"model": {"vocab": {w: i for i, w in enumerate(words)}}}
    import json

    ckpt = tmp_path / "lm" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(
        {
            "state_dict": lm.state_dict(),
            "hyper_parameters": dict(lm.hparams),
            "IMDBLanguageModelDataModule": {"vocab": json.dumps(vocab_json), "labels": []},
        },
        ckpt,
    )
    dm = IMDBDataModule(val_size=20)
    dm.setup("fit")
    kwargs = dict(embedding_dim=8, hidden_size=6, pooling="concat", discriminative_lr=2.0, gradual_unfreezing=True)
    model = SequenceClassifier(dm.vocab_size, 2, pretrained_encoder=str(tmp_path / "lm"), **rnn_args(kwargs))
    model.bind_task(dm.describe_task(), "fit")  # a folder: its newest */checkpoints/last.ckpt
    for name, value in lm.rnn.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value)
    assert model.head.in_features == 3 * 12, "concat pooling: [last, max, mean] of both directions"

    monkeypatch.setattr(SequenceClassifier, "_stepping_batches", lambda self: 10)
    opt = model.configure_optimizers()["optimizer"]
    lrs = {id(p): g["max_lr"] for g in opt.param_groups for p in g["params"]}  # one-cycle peaks
    assert lrs[id(model.head.weight)] == pytest.approx(2e-3)
    assert lrs[id(model.encoder.weight_hh_l0)] == pytest.approx(1e-3)
    assert lrs[id(model.embedding.weight)] == pytest.approx(5e-4)
    batch = next(iter(dm.train_dataloader()))
    for epoch, trained in ((0, {"head"}), (1, {"head", "encoder"}), (2, {"head", "encoder", "embedding"})):
        monkeypatch.setattr(SequenceClassifier, "current_epoch", property(lambda self, e=epoch: e))
        model._trainer = type("OneProcess", (), {"world_size": 1})()
        model.on_train_epoch_start()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(batch.tokens, batch.lengths), batch.target).backward()
        model.on_before_optimizer_step(opt)
        opt.step()
        moved = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
        assert moved == trained, f"epoch {epoch}"
    model.requires_grad_(True)  # under DDP nothing is frozen by requires_grad: the gradients are dropped instead
    monkeypatch.setattr(SequenceClassifier, "current_epoch", property(lambda self: 0))
    model._trainer = type("TwoProcesses", (), {"world_size": 2})()
    model.on_train_epoch_start()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(batch.tokens, batch.lengths), batch.target).backward()
    assert model.encoder.weight_hh_l0.grad is not None
    model.on_before_optimizer_step(opt)
    opt.step()
    assert {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])} == {"head"}

    bad = SequenceClassifier(
        dm.vocab_size, 2, embedding_dim=8, pretrained_encoder=str(ckpt), rnn=RecurrentSpec(hidden_size=7)
    )
    with pytest.raises(RnnlabError, match="hidden_size: 6 \\(this model 7\\)"):
        bad.bind_task(dm.describe_task(), "fit")
    missing = SequenceClassifier(dm.vocab_size, 2, pretrained_encoder=str(tmp_path / "nowhere.ckpt"))
    with pytest.raises(RnnlabError, match="imdb_lm_pretrain.yaml"):
        missing.bind_task(dm.describe_task(), "fit")


def test_pretrain_then_fine_tune_then_predict_through_the_cli(env):
    pretrain = [
        *QUIET,
        *SMALL,
        "--model.init_args.adaptive_cutoffs=[8, 20]",
        "--data.init_args.val_size=20",
        "--data.init_args.seq_len=16",
        "--data.init_args.batch_size=8",
        "--trainer.max_epochs=1",
        "--samples.max_new=5",
    ]
    main(["fit", "--config", str(ROOT / "configs" / "imdb_lm_pretrain.yaml"), *pretrain])
    run = env / "runs" / "imdb_lm_pretrain" / "version_0"
    assert "val/ppl_backward" in (run / "metrics.csv").read_text().splitlines()[0]
    assert "=== epoch 0" in (run / "samples.txt").read_text()
    rows = predict_rows(
        ROOT / "configs" / "imdb_lm_pretrain.yaml",
        run / "checkpoints" / "last.ckpt",
        '["the movie was", ""]',
        *pretrain,
        "--model.init_args.max_new=4",
    )
    assert rows[0]["output"].startswith("the movie was ") and len(rows[0]["output"].split()) >= 4
    assert "empty prompt" in rows[1]["error"]
    config = ROOT / "configs" / "imdb_lstm_lm.yaml"
    tune = [*QUIET, *SMALL, "--data.init_args.val_size=20", "--data.init_args.batch_size=16", "--trainer.max_epochs=3"]
    main(["fit", "--config", str(config), *tune])
    ckpt = env / "runs" / "imdb_lstm_lm" / "version_0" / "checkpoints" / "last.ckpt"
    rows = predict_rows(config, ckpt, '["A wonderful film", "  "]', *tune)
    assert rows[0]["label"] in ("neg", "pos") and 0.5 <= rows[0]["prob"] <= 1 and "empty input" in rows[1]["error"]
