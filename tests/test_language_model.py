"""Character language models: stream batching, carried state, sampling, conditional generation, configs."""

import json
from pathlib import Path

import pytest
import torch

from conftest import predict_rows
from rnnlab.cli import main
from rnnlab.data.charlm import CharCorpusDataModule, StreamBatchSampler, StreamWindows
from rnnlab.errors import RnnlabError
from rnnlab.models.language_model import LanguageModel, sample_next
from rnnlab.nn.recurrent import RecurrentSpec

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--model.init_args.rnn.hidden_size",
    "32",
    "--model.init_args.embedding_dim",
    "16",
]
SLICES = ["--data.init_args.val_fraction", "0.1", "--data.init_args.test_fraction", "0.1"]  # enough for 4 streams
TEXT = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n"
) * 12


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "play.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_stateful_windows_cover_each_stream_contiguously():
    stream = torch.arange(1000, dtype=torch.int32)
    windows = StreamWindows(stream, num_streams=4, seq_len=10)
    batches = list(StreamBatchSampler(windows, batch_size=4, stateful=True))
    assert len(batches) == windows.windows
    for s in range(4):  # row s of consecutive batches reads its stream without gaps, targets shifted by one
        inputs = torch.cat([windows[b[s]][0] for b in batches])
        targets = torch.cat([windows[b[s]][1] for b in batches])
        assert torch.equal(inputs, torch.arange(inputs[0], inputs[0] + len(inputs)))
        assert torch.equal(targets, inputs + 1)
    firsts = [int(windows[batches[0][s]][0][0]) for s in range(4)]
    assert firsts == [0, 249, 498, 747]
    # two DDP ranks: disjoint streams, the same number of batches
    r0 = list(StreamBatchSampler(StreamWindows(stream, 4, 10), 2, True, rank=0, num_replicas=2))
    r1 = list(StreamBatchSampler(StreamWindows(stream, 4, 10), 2, True, rank=1, num_replicas=2))
    assert len(r0) == len(r1) and not set(sum(r0, [])) & set(sum(r1, []))
    # stateless: every window once per epoch, order changes with the epoch
    sampler = StreamBatchSampler(windows, 4, stateful=False, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sorted(sum(first, [])) == list(range(len(windows))) and list(sampler) != first


@pytest.mark.parametrize("cell,impl", [("lstm", "torch"), ("gru", "handwritten")])
def test_carried_state_over_two_windows_equals_one_pass_over_both(cell, impl):
    torch.manual_seed(0)
    model = LanguageModel(
        vocab_size=20, embedding_dim=8, rnn=RecurrentSpec(hidden_size=16, num_layers=2, cell=cell, impl=impl)
    ).eval()
    x = torch.randint(2, 20, (3, 24))
    full = torch.full((3,), 24)
    half = torch.full((3,), 12)
    with torch.no_grad():
        whole, _ = model(x, full)
        first, state = model(x[:, :12], half)
        second, _ = model(x[:, 12:], half, state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)


def test_sampling_temperature_top_k_and_seed():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 30, generator=g)
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample_next(logits, temperature=1e-4, generator=g), logits.argmax(-1))
    top = logits.topk(3, dim=-1).indices
    for _ in range(20):
        ids = sample_next(logits, temperature=2.0, top_k=3, generator=g)
        assert (top == ids.unsqueeze(1)).any(1).all()
    a = sample_next(logits, 1.0, generator=torch.Generator().manual_seed(7))
    b = sample_next(logits, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_generation_is_reproducible_and_conditional_generation_stops_at_eos():
    torch.manual_seed(0)
    model = LanguageModel(
        vocab_size=12, num_classes=3, embedding_dim=8, rnn=RecurrentSpec(hidden_size=16, num_layers=1, cell="gru")
    )
    with torch.no_grad():  # make <eos> (id 3) likely, so rows end at different steps
        model.head.bias[3] = 2.0
    prompt, category = torch.tensor([[2], [2], [2], [2]]), torch.tensor([0, 1, 2, 0])  # <bos> with a category each
    a = model.generate(prompt, max_new=15, temperature=1.0, eos_id=3, seed=5, category=category)
    b = model.generate(prompt, max_new=15, temperature=1.0, eos_id=3, seed=5, category=category)
    assert torch.equal(a, b) and a.shape == (4, 15)
    assert not (a == 3).any(), "the end symbol is not part of the output"
    ended = (a == -1).any(1)
    assert ended.any()
    for row in a[ended]:  # once ended, only -1 follows
        first = int((row == -1).nonzero()[0])
        assert (row[first:] == -1).all()
    long = model.generate(prompt, max_new=4, temperature=1.0, eos_id=None, seed=1, category=category)
    with pytest.raises(RnnlabError, match="needs a category per sequence"):
        model.generate(prompt, max_new=4)
    assert long.shape == (4, 4) and (long >= 0).all(), "max_new is respected when nothing ends"


def test_acrostic_forces_the_first_symbol_of_each_line():
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=12, embedding_dim=8, rnn=RecurrentSpec(hidden_size=16, num_layers=1, cell="gru"))
    with torch.no_grad():  # a model that ends a line (id 5) at every step unless forced
        model.head.bias[5] = 50.0
    prompt = torch.tensor([[2], [2]])  # <bos>
    out = model.generate(prompt, max_new=8, temperature=1.0, seed=0, line_heads=[[7, 8, 9], None], line_ends=[5])
    assert out[0].tolist() == [7, 5, 8, 5, 9, 5, 5, 5]  # heads at each line start, then free once used up
    assert out[1].tolist() == [5] * 8


def test_corpus_datamodule_splits_contiguously_with_training_vocabulary(env, text_file):
    dm = CharCorpusDataModule(path=str(text_file), seq_len=16, batch_size=2, val_fraction=0.1, test_fraction=0.1)
    dm.setup("fit")
    cut, test_cut = int(len(TEXT) * 0.8), int(len(TEXT) * 0.9)
    assert "".join(dm.vocab.decode(dm.datasets["train"].rows[:40].tolist())) == TEXT[:40]
    assert "".join(dm.vocab.decode(dm.datasets["val"].rows[:20].tolist())) == TEXT[cut : cut + 20]
    assert "".join(dm.vocab.decode(dm.datasets["test"].rows[:20].tolist())) == TEXT[test_cut : test_cut + 20]
    # three disjoint contiguous slices: the windows of each split cover only its own characters
    spans = {split: int(dm.datasets[split].rows.numel()) for split in ("train", "val", "test")}
    assert sum(spans.values()) <= len(TEXT) and spans["test"] <= len(TEXT) - test_cut
    assert not torch.equal(dm.datasets["test"].rows, dm.datasets["val"].rows[: spans["test"]])
    items = dm.encode_predict(["ROMEO", "", "Zq€"])
    assert "tokens" in items[0] and "empty" in items[1]["error"] and "€" in items[2]["error"]


def test_shakespeare_config_trains_writes_samples_and_generates(env, text_file):
    config = str(ROOT / "configs" / "shakespeare_char_lstm.yaml")
    args = [
        *TINY,
        "--data.init_args.path",
        str(text_file),
        *SLICES,
        "--data.init_args.seq_len",
        "32",
        "--data.init_args.batch_size",
        "4",
        "--samples.max_new",
        "40",
    ]
    main(["fit", "--config", config, *args, "--trainer.max_epochs", "2"])
    run = env / "runs" / "shakespeare_char_lstm" / "version_0"
    samples = (run / "samples.txt").read_text(encoding="utf-8")
    assert samples.count("=== epoch") == 2
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert "val/bpc" in metrics[0]
    out = []
    for name in ("a.jsonl", "b.jsonl"):
        main(
            [
                "predict",
                "--config",
                config,
                *args,
                "--ckpt_path",
                str(run / "checkpoints" / "last.ckpt"),
                "--data.init_args.predict_texts",
                '["ROMEO:\\\\n", "", "J"]',
                "--model.init_args.max_new",
                "25",
                "--model.init_args.sample_seed",
                "3",
                "--prediction_writer.output",
                name,
            ]
        )
        out.append([json.loads(line) for line in (env / name).read_text().splitlines()])
    assert out[0] == out[1], "the same seed gives the same text"
    assert out[0][0]["output"].startswith("ROMEO:\n") and len(out[0][0]["output"]) == 7 + 25
    assert "empty prompt" in out[0][1]["error"]


def test_stateless_mode_fast_dev_run(env, text_file):
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "shakespeare_char_lstm.yaml"),
            *TINY,
            "--data.init_args.path",
            str(text_file),
            *SLICES,
            "--data.init_args.stateful",
            "false",
            "--data.init_args.seq_len",
            "32",
            "--data.init_args.batch_size",
            "4",
            "--trainer.fast_dev_run",
            "true",
        ]
    )


def test_names_generation_config_and_predict(env):
    config = str(ROOT / "configs" / "names_generate_gru.yaml")
    main(["fit", "--config", config, *TINY, "--trainer.max_epochs", "2", "--data.init_args.batch_size", "16"])
    ckpt = env / "runs" / "names_generate_gru" / "version_0" / "checkpoints" / "last.ckpt"
    rows = predict_rows(config, ckpt, '["Russian", "czech:Dv", "Klingon"]', *TINY, "--model.init_args.max_new", "12")
    assert rows[0]["category"] == "Russian" and 1 <= len(rows[0]["output"]) <= 12
    assert rows[1]["category"] == "Czech" and rows[1]["output"].startswith("Dv")
    assert "unknown category 'Klingon'" in rows[2]["error"]


# ------------------------------------------------------------------ Tang poetry
def test_regular_form_and_tang_loader(env):
    from rnnlab.data.poetry import TangPoetryDataModule, poem_lines, regular_form

    assert regular_form("床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。") == (5, 4)
    assert regular_form("朝辭白帝彩雲間，千里江陵一日還。兩岸猿聲啼不住，輕舟已過萬重山。") == (7, 4)
    assert regular_form("君不見黃河之水天上來，奔流到海不復回。") is None
    assert regular_form("床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉") is None  # no final mark
    assert regular_form("床前明月光。疑是地上霜，舉頭望明月，低頭思故鄉。") is None  # marks out of pattern
    assert poem_lines("春眠不覺曉，處處聞啼鳥。") == ["春眠不覺曉", "處處聞啼鳥"]
    splits, labels = TangPoetryDataModule(form="regular").read_documents()
    assert labels == [] and sum(len(v) for v in splits.values()) == 2 * 6 * 5  # the irregular poem is dropped
    five = TangPoetryDataModule(form="regular", line_chars=7).read_documents()[0]
    assert sum(len(v) for v in five.values()) == 2 * 6 * 1
    simplified = TangPoetryDataModule(form="any", script="simplified").read_documents()[0]
    assert any("举头望明月" in text for split in simplified.values() for text, _ in split)


def test_tang_poetry_config_trains_and_writes_poems(env):
    from rnnlab.data.poetry import poem_lines

    config = str(ROOT / "configs" / "tang_poetry_lstm.yaml")
    main(
        [
            "fit",
            "--config",
            config,
            *TINY,
            "--trainer.max_epochs",
            "2",
            "--data.init_args.batch_size",
            "8",
            "--samples.max_new",
            "30",
        ]
    )
    run = env / "runs" / "tang_poetry_lstm" / "version_0"
    assert "=== epoch 1" in (run / "samples.txt").read_text(encoding="utf-8")
    rows = predict_rows(
        config,
        run / "checkpoints" / "last.ckpt",
        '["", "床前", "😀", "藏头:白黃春夜"]',
        *TINY,
        "--model.init_args.max_new",
        "40",
    )
    lines = poem_lines(rows[3]["output"])
    assert [line[0] for line in lines[:4]] == list("白黃春夜")[: len(lines[:4])]
    assert 0 < len(rows[0]["output"]) <= 40 and "<" not in rows[0]["output"]
    assert rows[1]["output"].startswith("床前")
    assert "never seen in training" in rows[2]["error"]


@pytest.mark.parametrize("stateful", [True, False])
def test_stream_batches_resume_mid_epoch_where_they_stopped(stateful):
    windows = StreamWindows(torch.arange(2000), num_streams=4, seq_len=10)
    sampler = StreamBatchSampler(windows, 4, stateful, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.consumed = 5  # five batches trained on, then the process was killed
    resumed = StreamBatchSampler(windows, 4, stateful, seed=3)
    resumed.load_state_dict(sampler.state_dict())
    resumed.set_epoch(2)  # Lightning sets the same epoch again on resume
    assert list(resumed) == full[5:]
    resumed.set_epoch(3)
    assert len(list(resumed)) == len(full), "a new epoch starts from its first batch"
