"""Names -> gender (namesex, Chinese-Names-Corpus) and names -> language (PyTorch tutorial), on format fixtures."""

from functools import partial
from pathlib import Path

import pytest
import torch

from conftest import language_classifier, predict_rows, setup_for_fit, write_pytorch_names
from rnnlab.cli import main
from rnnlab.data.names import (
    ChineseNamesDataModule,
    NameLanguageDataModule,
    read_cncorpus,
    read_namesex,
    read_pytorch_names,
    to_ascii,
)
from rnnlab.errors import RnnlabError
from rnnlab.models import SequenceClassifier
from rnnlab.nn.recurrent import RecurrentSpec

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
TINY_GENERATIVE = "{class_path: GenerativeExpert, init_args: {hidden_size: 16, cell: gru}}"
FOUR_EXPERTS = f"--model.init_args.experts=[{{class_path: BagExpert}}, {TINY_GENERATIVE}, {{class_path: NgramExpert, init_args: {{order: 1}}}}]"
THREE_EXPERTS = f"--model.init_args.experts=[{TINY_GENERATIVE}, {{class_path: NgramExpert, init_args: {{order: 3}}}}]"


def test_namesex_reader_handles_bom_blank_lines_and_spaces_and_names_bad_rows(local_data, tmp_path):
    rows = read_namesex(local_data / "namesex" / "namesex_data_v2.csv")
    assert len(rows) == 300 and all(len(n) == 2 and s in (0, 1) and 0 <= f <= 9 for n, s, f in rows)
    bad = tmp_path / "namesex_data_v2.csv"
    bad.write_text("gname,sex,fold\n志明,1,3\n春嬌,female,2\n", encoding="utf-8")
    with pytest.raises(RnnlabError, match="line 3"):
        read_namesex(bad)


def test_cncorpus_reader_skips_headers_and_the_datamodule_drops_unknown_gender(local_data, env):
    rows = read_cncorpus(local_data / "chinese_names" / "Chinese_Names_Corpus_Gender（120W）.txt")
    assert len(rows) == 200 and {s for _, s in rows} == {"男", "女", "未知"}
    dm = ChineseNamesDataModule(source="cncorpus", protocol="sample", test_size=20, train_size=1000)
    dm.setup("fit")
    total = sum(len(dm.datasets[s]) for s in ("train", "val", "test"))
    assert total == sum(s != "未知" for _, s in rows)
    with pytest.raises(RnnlabError, match="protocol=sample"):
        ChineseNamesDataModule(source="cncorpus", protocol="folds")


def test_pytorch_names_from_zip_and_from_extracted_folder(tmp_path):
    z = read_pytorch_names(write_pytorch_names(tmp_path / "data.zip"))
    d = read_pytorch_names(write_pytorch_names(tmp_path / "x" / "data" / "names", as_folder=True))
    assert z == d and sorted(z) == ["Czech", "German", "Japanese", "Polish", "Russian"]
    assert to_ascii("Ślusàrski") == "Slusarski" and to_ascii("Dvořák") == "Dvorak" and to_ascii("李") == ""


def test_fold_protocol_never_trains_on_the_test_fold(env, local_data):
    rows = read_namesex(local_data / "namesex" / "namesex_data_v2.csv")
    for fold in (0, 7):
        dm = ChineseNamesDataModule(test_fold=fold, batch_size=8)
        dm.setup("fit")
        test_names = [n for n, _, f in rows if f == fold]
        assert len(dm.datasets["test"]) == len(test_names)
        decode = lambda ds, dm=dm: {"".join(dm.vocab.decode(s.tolist())) for s in ds.sequences}  # noqa: E731
        assert decode(dm.datasets["test"]) == set(test_names)
        train_val = [n for n, _, f in rows if f != fold]
        assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == len(train_val)
        assert len(dm.datasets["testdata"]) == 20


def test_fold_protocol_train_size_subsamples_the_nine_folds_only(env, local_data):
    rows = read_namesex(local_data / "namesex" / "namesex_data_v2.csv")
    train_val = {n for n, _, f in rows if f != 3}
    decode = lambda dm, s: ["".join(dm.vocab.decode(x.tolist())) for x in dm.datasets[s].sequences]  # noqa: E731
    picked = []
    for _ in range(2):
        dm = ChineseNamesDataModule(test_fold=3, train_size=100, batch_size=8)
        dm.setup("fit")
        names = decode(dm, "train") + decode(dm, "val")
        assert len(names) == 100 and set(names) <= train_val  # a sample of the nine folds, never the test fold
        assert len(dm.datasets["test"]) == sum(f == 3 for _, _, f in rows)  # the test fold is whole
        picked.append(sorted(names))
    assert picked[0] == picked[1]  # the same seed draws the same names
    other = ChineseNamesDataModule(test_fold=3, train_size=100, batch_size=8, seed=7)
    other.setup("fit")
    assert sorted(decode(other, "train") + decode(other, "val")) != picked[0]
    with pytest.raises(RnnlabError, match="train_size"):
        ChineseNamesDataModule(train_size=0)


def test_top_k_character_vocabulary_maps_the_rest_to_unk(env):
    dm = ChineseNamesDataModule(max_vocab=7, batch_size=8)
    dm.setup("fit")
    assert dm.vocab_size == 7
    ids = torch.cat(list(dm.datasets["train"].sequences))
    assert (ids == dm.vocab.unk_id).any() and ids.max() < 7


def test_stratified_language_split_keeps_every_class(env):
    dm = NameLanguageDataModule(batch_size=8)
    dm.setup("fit")
    assert dm.labels == ["Czech", "German", "Japanese", "Polish", "Russian"]
    for split in ("train", "val", "test"):
        assert set(dm.datasets[split].targets.tolist()) == set(range(5)), split
    assert len(dm.datasets["test"]) == 14  # 10% of each language: 6 + 4 * 2


def test_train_on_val_trains_on_both_and_keeps_the_test_split_apart(env, caplog):
    held_out = NameLanguageDataModule(batch_size=8)
    held_out.setup("fit")
    refit = NameLanguageDataModule(batch_size=8, train_on_val=True)
    assert "not held out" in caplog.text
    refit.setup("fit")

    def rows(dm, split):
        ds = dm.datasets[split]
        return sorted(("".join(dm.vocab.decode(s.tolist())), int(y)) for s, y in zip(ds.sequences, ds.targets))

    assert rows(refit, "train") == sorted(rows(held_out, "train") + rows(held_out, "val"))
    assert rows(refit, "test") == rows(held_out, "test")
    assert refit.class_counts == [a + b for a, b in zip(held_out.class_counts, [2, 2, 2, 2, 6])]


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_onehot_and_embedding_inputs_have_the_same_shapes_and_train(encoding, env):
    dm = NameLanguageDataModule(batch_size=32)
    dm.setup("fit")
    torch.manual_seed(0)
    model = SequenceClassifier(
        dm.vocab_size,
        dm.num_classes,
        input_encoding=encoding,
        embedding_dim=16,
        pooling="last",
        dropout=0.0,
        embedding_dropout=0.0,
        rnn=RecurrentSpec(hidden_size=32, cell="rnn", bidirectional=False),
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = next(iter(dm.train_dataloader()))
    losses = []
    for _ in range(30):
        logits = model(batch.tokens, batch.lengths)
        assert logits.shape == (len(batch), 5)
        loss = torch.nn.functional.cross_entropy(logits, batch.target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_class_weighting_comes_from_training_counts(env):
    dm = NameLanguageDataModule(batch_size=8)
    dm.setup("fit")
    assert dm.class_counts == [16, 16, 16, 16, 48]
    model = SequenceClassifier(dm.vocab_size, dm.num_classes, class_weighting="balanced")
    setup_for_fit(model, dm)
    w = model.class_weights
    assert torch.allclose(w[:4], w[0].expand(4)) and torch.isclose(w[0] / w[4], torch.tensor(3.0))


def fit_and_test_tiny(env: Path, name: str, tiny: list[str]) -> tuple[str, Path, Path]:
    """``fit`` (2 epochs) then ``test`` ``configs/<name>.yaml`` with ``tiny`` overrides: (config, run dir, last.ckpt)."""
    config = str(ROOT / "configs" / f"{name}.yaml")
    main(["fit", "--config", config, *tiny, "--trainer.max_epochs", "2"])
    run = env / "runs" / name / "version_0"
    ckpt = run / "checkpoints" / "last.ckpt"
    main(["test", "--config", config, *tiny, "--ckpt_path", str(ckpt)])
    return config, run, ckpt


def test_gender_cli_fit_writes_confusion_matrix_and_predicts_top_k_with_unknown_characters(env):
    tiny = [*QUIET, "--model.init_args.rnn.hidden_size", "16", "--model.init_args.embedding_dim", "8"]
    config, run, ckpt = fit_and_test_tiny(env, "namesex_bigru", tiny)
    assert (run.parent / "version_1" / "confusion_matrix.png").stat().st_size > 1000
    report = (run.parent / "version_1" / "classification_report.txt").read_text()
    assert "female" in report and "male" in report and "f1-score" in report
    rows = predict_rows(config, str(ckpt), '["文偉", "文伟", "", "文龘", "ABC"]', *tiny, output="names.jsonl")
    assert rows[0]["label"] in ("female", "male") and rows[0]["top"].count(",") == 1
    assert "warning" not in rows[1], "simplified 伟 is converted to the traditional 偉 the model knows"
    assert rows[1]["top"] == rows[0]["top"]
    assert "empty" in rows[2]["error"]
    assert "龘" in rows[3]["warning"] and "<unk>" in rows[3]["warning"]
    assert "unknown" in rows[4]["warning"]


def test_four_expert_gender_config_fits_tests_and_predicts_with_components_and_pinyin(env):
    tiny = [*QUIET, "--model.init_args.rnn.hidden_size", "16", FOUR_EXPERTS]
    config, run, ckpt = fit_and_test_tiny(env, "namesex_hybrid", tiny)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert state["experts.bag.bag.weight.weight"].abs().sum() > 0, "the logistic regression expert was trained"
    assert "experts.generative.lm.head.weight" in state and "experts.ngram.log_prior" in state
    assert (run.parent / "version_1" / "classification_report.txt").exists()
    rows = predict_rows(config, str(ckpt), '["文偉", "文伟", ""]', *tiny, output="four.jsonl")
    probs = [float(part.rsplit(" ", 1)[1]) for part in rows[0]["top"].split(", ")]
    assert rows[0]["label"] in ("female", "male") and abs(sum(probs) - 1) < 0.01
    assert rows[1]["top"] == rows[0]["top"] and "empty" in rows[2]["error"]


def test_language_cli_predict_top_k(env):
    config = str(ROOT / "configs" / "names_lstm.yaml")
    tiny = [*QUIET, "--model.init_args.rnn.hidden_size", "16", "--model.init_args.rnn.num_layers", "1"]
    main(["fit", "--config", config, *tiny, "--trainer.max_epochs", "1"])
    ckpt = env / "runs" / "names_lstm" / "version_0" / "checkpoints" / "last.ckpt"
    rows = predict_rows(config, str(ckpt), '["Dvořák", "李"]', *tiny, output="lang.jsonl")
    assert rows[0]["top"].count(",") == 2 and rows[0]["label"] in rows[0]["top"]
    # names_lstm keeps Unicode: a character never seen in training is <unk>, predicted with a warning
    assert "every character is unknown" in rows[1]["warning"]
    main(["fit", "--config", config, *tiny, "--trainer.max_epochs", "1", "--data.init_args.ascii", "true"])
    ckpt = max((env / "runs" / "names_lstm").glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    row = predict_rows(
        config, str(ckpt), '["Dvorak", "李"]', *tiny, "--data.init_args.ascii", "true", output="ascii.jsonl"
    )[1]
    assert "no usable character" in row["error"]  # ASCII folding leaves nothing of 李


def test_character_features_add_components_and_pinyin_and_help_an_unseen_character(env):
    from rnnlab.data.names import CharFeatures

    features = CharFeatures(["components", "pinyin"])
    assert features("婷玉").split() == ["婷", "c女", "c亭", "ting2", "玉", "c王", "c丶", "yu4"]
    assert CharFeatures(["pinyin"])("偉") == "偉 wei3" and CharFeatures(["components"])("A") == "A"
    with pytest.raises(RnnlabError, match="radicals"):
        CharFeatures(["radicals"])
    dm = ChineseNamesDataModule(char_features=["components", "pinyin"], batch_size=8)
    dm.setup("fit")
    assert dm.vocab.split(dm.preprocess(" 婷玉 ")) == features("婷玉").split()
    known = set(dm.vocab.tokenizer.get_vocab())
    assert {"c女", "ting2"} <= known  # the fixture's names use 婷
    (item,) = dm.encode_predict(["嬅"])  # never seen, but its 女 side and its sound are
    assert "嬅" in item["warning"] and "unknown tokens" in item["warning"]
    ids = item["tokens"].tolist()
    assert ids[0] == dm.vocab.unk_id and dm.vocab.tokenizer.token_to_id("c女") in ids


def test_generative_expert_likelihood_ignores_padding_and_scores_every_class(env):
    from rnnlab.models.classifier import GenerativeExpert

    torch.manual_seed(0)
    expert = GenerativeExpert(12, 3, 0, embedding_dim=8, class_dim=4, hidden_size=16, cell="gru", dropout=0.0).eval()
    lm = expert.lm  # the LanguageModel of the language-model task, conditioned on the class at every input step
    short, long_ = torch.tensor([5, 6]), torch.tensor([4, 7, 9, 3, 2])
    batch = torch.zeros(2, 5, dtype=torch.long)
    batch[0, :2], batch[1] = short, long_
    lengths = torch.tensor([2, 5])
    with torch.no_grad():
        together = expert.log_likelihood(batch, lengths, torch.tensor([1, 2]))
        alone = expert.log_likelihood(short[None], torch.tensor([2]), torch.tensor([1]))
        scores = expert.log_likelihoods(batch, lengths)
        # by hand: log p(x1 | <bos>) + log p(x2 | <bos> x1) + log p(<eos> | <bos> x1 x2), one step at a time
        x = torch.tensor([[12, 5, 6]])
        emb = torch.cat([lm.embedding(x), lm.category(torch.tensor([1]))[:, None].expand(-1, 3, -1)], -1)
        out, _ = lm.rnn(emb, torch.tensor([3]))
        logp = torch.log_softmax(lm.head(out), -1)[0]
        by_hand = logp[0, 5] + logp[1, 6] + logp[2, 12]
    assert torch.allclose(together[0], alone[0], atol=1e-5)  # the padding of a shorter name changes nothing
    assert torch.allclose(together[0], by_hand, atol=1e-5)
    assert scores.shape == (2, 3) and torch.allclose(scores[1, 2], together[1], atol=1e-5)
    assert (scores < 0).all()


def test_generative_classifier_takes_the_geometric_mean_of_the_two_posteriors_with_the_training_prior(env):
    from rnnlab.models.classifier import GenerativeExpert

    model, dm = language_classifier(
        embedding_dim=8,
        experts=[partial(GenerativeExpert, hidden_size=16, embedding_dim=8, class_dim=4)],
        rnn=RecurrentSpec(hidden_size=16),
    )
    prior = torch.tensor([16, 16, 16, 16, 48.0]) / 112
    generative = model.experts["generative"]
    assert torch.allclose(generative.log_prior, prior.log())
    model.eval()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        combined = model(batch.tokens, batch.lengths)
        disc = torch.log_softmax(model.discriminate(batch.tokens, batch.lengths), -1)
        gen = torch.log_softmax(generative.log_likelihoods(batch.tokens, batch.lengths) + prior.log(), -1)
    assert torch.allclose(combined, torch.log_softmax((disc + gen) / 2, -1), atol=1e-5)
    assert torch.equal(combined.argmax(-1), (disc + gen).argmax(-1))  # the product's decisions
    # the class prior matters: a uniform one changes the generative posterior
    with torch.no_grad():
        generative.log_prior.zero_()
        assert not torch.allclose(model(batch.tokens, batch.lengths), combined)


def test_hybrid_language_config_fits_tests_and_predicts_probabilities(env):
    tiny = [*QUIET, "--model.init_args.rnn.hidden_size", "16", THREE_EXPERTS]
    config, run, ckpt = fit_and_test_tiny(env, "names_hybrid", tiny)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    prior = saved["state_dict"]["experts.generative.log_prior"]
    assert torch.allclose(prior.exp(), torch.tensor([16, 16, 16, 16, 48.0]) / 112)  # restored with the weights
    weights = saved["state_dict"]
    trigram = (
        weights["experts.ngram.lm._extra_state"]["order"] == 3 and weights["experts.ngram.lm.event_counts"].sum() > 0
    )
    assert trigram and torch.equal(weights["experts.ngram.log_prior"], prior)  # the counts, and the same prior
    assert (run.parent / "version_1" / "confusion_matrix.png").exists()
    rows = predict_rows(config, str(ckpt), '["Dvořák", "Novak"]', *tiny, output="hybrid.jsonl")
    for row in rows:
        probs = [float(part.rsplit(" ", 1)[1]) for part in row["top"].split(", ")]
        assert row["label"] == row["top"].split(" ")[0] and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1.001


@pytest.mark.slow
def test_refit_preset_trains_on_train_and_val_and_keeps_the_last_epoch(env):
    refit = str(ROOT / "configs" / "recipes" / "refit.yaml")
    tiny = [
        *QUIET,
        "--config",
        refit,
        "--model.init_args.rnn.hidden_size",
        "16",
        THREE_EXPERTS,
    ]
    _, run, _ = fit_and_test_tiny(env, "names_hybrid", tiny)
    saved = (run / "config.yaml").read_text()
    assert "train_on_val: true" in saved and "class_path: rnnlab.data.names.NameLanguageDataModule" in saved
    kept = sorted(p.name for p in (run / "checkpoints").glob("epoch*.ckpt"))
    assert kept == ["epoch1-step4.ckpt"], kept  # the last epoch (2 x 2 batches of the 128 train + val names)


def test_a_plain_classifier_has_no_expert_state_so_older_checkpoints_still_load():
    from rnnlab.models.classifier import GenerativeExpert

    plain = SequenceClassifier(vocab_size=20, num_classes=3)
    assert not any(k.startswith(("experts", "generative", "log_prior")) for k in plain.state_dict())
    hybrid = SequenceClassifier(vocab_size=20, num_classes=3, experts=[GenerativeExpert])
    assert any(k.startswith("experts.generative.lm.") for k in hybrid.state_dict())


def test_namesex_testdata_unseen_leaves_out_the_names_of_the_main_file(env):
    from rnnlab.data.names import ChineseNamesDataModule

    splits, _ = ChineseNamesDataModule(source="namesex").read_splits()
    main_names = {n for split in ("train", "val", "test") for n, _ in splits[split]}
    overlap = [n for n, _ in splits["testdata"] if n in main_names]
    assert overlap, "the fixture, like the real file, repeats some testdata names"
    assert splits["testdata_unseen"] == [(n, y) for n, y in splits["testdata"] if n not in main_names]
