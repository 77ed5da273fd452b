"""Encoder-decoder translation: loaders of the three formats, attention, teacher forcing, greedy and beam search,
a copy task that must be learned, and each config end to end on fixtures."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import parallel_sentences, predict_rows, rnn_args, write_cmn, write_eng_fra
from rnnlab.cli import main
from rnnlab.data.batching import IGNORE_INDEX, pad_collate
from rnnlab.data.text import Vocabulary
from rnnlab.data.translation import TranslationDataModule, detokenize, tutorial_normalize
from rnnlab.errors import RnnlabError
from rnnlab.models.seq2seq import Seq2Seq
from rnnlab.nn.attention import Attention
from rnnlab.nn.recurrent import RecurrentSpec

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--model.init_args.rnn.hidden_size",
    "16",
    "--model.init_args.embedding_dim",
    "16",
]


# ------------------------------------------------------------------ loaders on the official formats
def test_multi30k_reads_aligned_official_splits(env):
    dm = TranslationDataModule(source="multi30k", src_lang="de", tgt_lang="en", src_vocab=60, tgt_vocab=60)
    dm.prepare_data()
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 200, "val": 20, "test": 20}
    rows = parallel_sentences(20, seed=102)  # the fixture's test_2016_flickr
    assert dm.source_text("test", 0) == rows[0]["de"] and dm.references("test")[0] == rows[0]["en"]
    tokens, target, _ = dm.dataset("test")[0]
    assert target[0] == dm.bos_id and target[-1] == dm.eos_id
    assert dm.decode_target(target[1:].tolist()) == rows[0]["en"]  # BPE decodes back to the exact sentence
    later = TranslationDataModule(
        source="multi30k", src_lang="en", tgt_lang="fr", test_set="test_2017_flickr", src_vocab=60, tgt_vocab=60
    )
    later.setup("test")
    assert len(later.dataset("test")) == 15 and later.references("test")[0] == parallel_sentences(15, 103)[0]["fr"]


def test_cmn_eng_split_directions_and_units(env):
    dm = TranslationDataModule(
        source="cmn_eng", src_lang="zh", tgt_lang="en", tgt_level="word", lowercase=True, min_freq=1
    )
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    pairs = dm.read_pairs()  # 300 pairs, a few sharing a source: val and test hold each source once
    assert sizes == {
        "train": len(pairs["train"]),
        "val": len({s for s, _ in pairs["val"]}),
        "test": len({s for s, _ in pairs["test"]}),
    }
    assert sum(map(len, pairs.values())) == 300 and 250 <= sizes["train"] <= 260 and 25 <= sizes["test"] <= 30
    assert dm.src_level == "char" and dm.tgt_level == "word"
    src, tgt, i = dm.dataset("train")[0]
    text = dm.source_text("train", i)
    assert dm.source_tokens(src.tolist()) == list(text)  # one id per character
    assert dm.decode_target(tgt[1:].tolist()) == dm.references("train")[i]
    assert dm.references("train")[i] == dm.references("train")[i].lower()
    reverse = TranslationDataModule(source="cmn_eng", src_lang="en", tgt_lang="zh", seed=42)
    reverse.setup("fit")
    assert reverse.tgt_level == "char" and reverse.src_level == "bpe"
    assert sum(len(reverse.dataset(s)) for s in ("train", "val", "test")) <= 300
    reverse_pairs = reverse.read_pairs()  # split by the English sources now
    assert not {s for s, _ in reverse_pairs["train"]} & {s for s, _ in reverse_pairs["test"]}


def test_tutorial_eng_fra_zip_and_filter(env, tmp_path, monkeypatch):
    local = tmp_path / "local"
    write_eng_fra(local / "eng_fra" / "data.zip")
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(local))
    assert tutorial_normalize("  Je suis fatigué!") == "je suis fatigue !"
    dm = TranslationDataModule(
        source="eng_fra",
        src_lang="en",
        tgt_lang="fr",
        src_level="word",
        tgt_level="word",
        tutorial_filter=True,
        min_freq=1,
    )
    pairs = dm.read_pairs()
    kept = sorted(s for part in pairs.values() for s, _ in part)
    assert kept == ["he is tall .", "i am cold .", "i m tired .", "they are busy .", "we are here .", "you re late !"]
    everything = TranslationDataModule(source="eng_fra", src_lang="fr", tgt_lang="en").read_pairs()
    assert sum(len(p) for p in everything.values()) == 9
    assert ("J'ai froid.", "I am cold.") in [p for part in everything.values() for p in part]


def test_a_malformed_pair_line_is_named(env, tmp_path, monkeypatch):
    local = tmp_path / "local"
    path = write_cmn(local / "cmn_eng" / "cmn.txt", n=20)
    path.write_text(path.read_text(encoding="utf-8") + "no tab on this line\n", encoding="utf-8")
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(local))
    with pytest.raises(RnnlabError, match="line 21"):
        TranslationDataModule(source="cmn_eng", src_lang="zh", tgt_lang="en").read_pairs()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"source": "multi30k", "src_lang": "de", "tgt_lang": "de"}, "both 'de'"),
        ({"source": "multi30k", "src_lang": "zh", "tgt_lang": "en"}, "multi30k has en, de, fr"),
        ({"source": "multi30k", "test_set": "test_2020"}, "test_set must be one of"),
        ({"source": "tatoeba"}, "source must be one of"),
        ({"source": "cmn_eng", "src_lang": "zh", "tgt_lang": "en", "tgt_level": "subword"}, "tgt_level must be"),
    ],
)
def test_bad_data_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(RnnlabError, match=match):
        TranslationDataModule(**kwargs)


def test_detokenize_levels():
    assert (
        detokenize(["tom", "'", "s", "dog", "isn", "'", "t", "here", ",", "is", "it", "?"], "word")
        == "tom's dog isn't here, is it?"
    )
    assert detokenize(["it", "costs", "3", ".", "5", "dollars", "."], "word") == "it costs 3.5 dollars."
    assert detokenize(["我", "爱", "你", "。"], "char") == "我爱你。"
    sentences = [r["de"] for r in parallel_sentences(50, seed=1)]
    vocab = Vocabulary.build(sentences, level="bpe", lowercase=False, max_size=80, extra_specials=["<bos>", "<eos>"])
    for s in sentences[:10]:
        assert detokenize(vocab.decode(vocab.encode([s])[0]), "bpe") == s


# ------------------------------------------------------------------ attention
@pytest.mark.parametrize("kind", ["additive", "general", "dot"])
def test_attention_weights_sum_to_one_and_ignore_padding(kind):
    torch.manual_seed(0)
    att = Attention(kind, 8, 8)
    keys = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    query = torch.randn(3, 4, 8)
    context, weights = att(query, keys, mask)
    assert weights.shape == (3, 4, 5) and context.shape == (3, 4, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert (weights.masked_select(~mask.unsqueeze(1).expand_as(weights)) == 0).all()
    assert (weights.masked_select(mask.unsqueeze(1).expand_as(weights)) > 0).all()
    garbage = keys.masked_fill(~mask.unsqueeze(-1), 1e3)  # what padding holds must not matter
    torch.testing.assert_close(att(query, garbage, mask)[0], context)


def test_dot_attention_needs_equal_sizes():
    with pytest.raises(RnnlabError, match="general"):
        Attention("dot", 8, 16)


# ------------------------------------------------------------------ the model
def toy_batch(seed: int = 0, B: int = 4, vocab: int = 20):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(B):
        s = torch.randint(4, vocab, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g)
        t = torch.randint(4, vocab, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g)
        samples.append((s, torch.cat([torch.tensor([2]), t, torch.tensor([3])]), i))
    return pad_collate(samples)


def model(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    args = dict(vocab_size=20, tgt_vocab_size=20, embedding_dim=8, hidden_size=8, dropout=0.0, beam_size=3)
    return Seq2Seq(**rnn_args({**args, **kw}, layers="encoder_layers")).eval()


@pytest.mark.parametrize(
    "kw",
    [
        {"input_feeding": False},
        {"input_feeding": True},
        {"cell": "lstm", "attention": "general", "decoder_layers": 2, "encoder_layers": 2},
        {"attention": "none", "input_feeding": False},
    ],
)
def test_teacher_forcing_equals_step_by_step_decoding_with_gold_tokens(kw):
    m, batch = model(**kw), toy_batch()
    tgt_in, _ = m._split_target(batch.target)
    forced = m(batch.tokens, batch.lengths, tgt_in)
    memory, state = m.encode(batch.tokens, batch.lengths)
    feed = memory["enc"].new_zeros(len(batch), 8)
    steps = []
    for t in range(tgt_in.shape[1]):
        logits, state, feed, _ = m.decode_step(tgt_in[:, t], state, feed, memory)
        steps.append(logits)
    torch.testing.assert_close(forced, torch.stack(steps, 1), atol=1e-5, rtol=1e-5)


def test_handwritten_cells_give_the_same_translations():
    torch_model, batch = model(cell="lstm"), toy_batch()
    hand = model(cell="lstm", impl="handwritten")
    hand.load_state_dict(torch_model.state_dict())
    tgt_in, _ = torch_model._split_target(batch.target)
    torch.testing.assert_close(
        hand(batch.tokens, batch.lengths, tgt_in),
        torch_model(batch.tokens, batch.lengths, tgt_in),
        atol=1e-5,
        rtol=1e-5,
    )
    assert torch.equal(hand.greedy(batch.tokens, batch.lengths), torch_model.greedy(batch.tokens, batch.lengths))


@pytest.mark.parametrize("attention", ["additive", "none"])
def test_beam_size_one_is_greedy(attention):
    m, batch = model(attention=attention), toy_batch(seed=3, B=6)
    greedy = m.greedy(batch.tokens, batch.lengths)
    ids, _ = m.beam_search(batch.tokens, batch.lengths, beam_size=1)
    assert torch.equal(ids[:, 0], greedy)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_sorted_by_normalised_score_and_stops_at_eos(alpha):
    m, batch = model(), toy_batch(seed=5, B=5)
    ids, scores = m.beam_search(batch.tokens, batch.lengths, beam_size=4, length_penalty=alpha, max_len=12)
    assert ids.shape[:2] == (5, 4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    for b in range(5):
        for k in range(4):
            hyp = ids[b, k].tolist()
            n = hyp.index(3) + 1 if 3 in hyp else len([t for t in hyp if t != 0])
            assert all(t == 0 for t in hyp[n:]), hyp  # nothing after <eos>
            # the score is the model's log-probability of the hypothesis / length^alpha
            tgt_in = torch.tensor([[2] + hyp[: n - 1]])
            logp = torch.log_softmax(m(batch.tokens[b : b + 1], batch.lengths[b : b + 1], tgt_in).float(), -1)
            total = logp[0, torch.arange(n), torch.tensor(hyp[:n])].sum()
            assert math.isclose(float(total.detach()) / n**alpha, float(scores[b, k]), rel_tol=1e-4, abs_tol=1e-4)
    # the best beam is at least as likely as greedy's output
    greedy = m.greedy(batch.tokens, batch.lengths, max_len=12)
    for b in range(5):
        hyp = greedy[b].tolist()
        n = hyp.index(3) + 1 if 3 in hyp else len([t for t in hyp if t != 0])
        logp = torch.log_softmax(
            m(batch.tokens[b : b + 1], batch.lengths[b : b + 1], torch.tensor([[2] + hyp[: n - 1]])).float(), -1
        )
        g = float(logp[0, torch.arange(n), torch.tensor(hyp[:n])].sum()) / n**alpha
        assert float(scores[b, 0]) >= g - 1e-4


@pytest.mark.slow
def test_copy_task_is_learned():
    """target = source over 10 symbols: > 95% token accuracy from greedy decoding within a few hundred steps."""
    torch.manual_seed(0)
    m = Seq2Seq(
        vocab_size=14,
        tgt_vocab_size=14,
        embedding_dim=32,
        dropout=0.0,
        label_smoothing=0.0,
        rnn=RecurrentSpec(hidden_size=64),
    )
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(1)

    def batch(n):
        samples = []
        for i in range(n):
            s = torch.randint(4, 14, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g)
            samples.append((s, torch.cat([torch.tensor([2]), s, torch.tensor([3])]), i))
        return pad_collate(samples)

    m.train()
    for _ in range(300):
        b = batch(32)
        tgt_in, labels = m._split_target(b.target)
        loss = F.cross_entropy(
            m(b.tokens, b.lengths, tgt_in).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    b = batch(200)
    out = m.greedy(b.tokens, b.lengths)
    gold = b.target[:, 1:]
    width = min(out.shape[1], gold.shape[1])
    real = gold[:, :width] != IGNORE_INDEX
    acc = float((out[:, :width] == gold[:, :width])[real].float().mean())
    assert acc > 0.95, acc


def test_bad_model_arguments():
    with pytest.raises(RnnlabError, match="teacher_forcing"):
        Seq2Seq(vocab_size=10, tgt_vocab_size=10, teacher_forcing=1.5)
    with pytest.raises(RnnlabError, match="attention must be"):
        Seq2Seq(vocab_size=10, tgt_vocab_size=10, attention="bahdanau")


# ------------------------------------------------------------------ configs end to end
@pytest.mark.parametrize(
    "config", ["cmn_eng_seq2seq_attn", "multi30k_de_en_attn", "multi30k_en_fr_attn", "eng_fra_seq2seq_attn"]
)
def test_config_fast_dev_run(env, config, monkeypatch):
    if config.startswith("eng_fra"):
        write_eng_fra(env / "local" / "eng_fra" / "data.zip")
        monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(env / "local"))
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / f"{config}.yaml"),
            *TINY,
            "--trainer.fast_dev_run",
            "true",
            "--data.init_args.src_vocab",
            "60",
            "--data.init_args.tgt_vocab",
            "60",
        ]
    )


def test_translation_learns_tests_and_predicts(env):
    config = str(ROOT / "configs" / "cmn_eng_seq2seq_attn.yaml")
    args = [
        *TINY,
        "--model.init_args.rnn.hidden_size",
        "32",
        "--data.init_args.batch_size",
        "16",
        "--data.init_args.min_freq",
        "1",
        "--model.init_args.dropout",
        "0.0",
        "--model.init_args.optimizer.init_args.lr",
        "0.01",
    ]
    main(["fit", "--config", config, *args, "--trainer.max_epochs", "15", "--early_stopping.patience", "20"])
    version = env / "runs" / "cmn_eng_seq2seq_attn" / "version_0"
    rows = (version / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    bleu = [float(r.split(",")[header.index("val/bleu")]) for r in rows[1:] if r.split(",")[header.index("val/bleu")]]
    assert len(bleu) == 15 and bleu[-1] > 30 and bleu[-1] > bleu[0], bleu
    shown = (version / "translations.txt").read_text(encoding="utf-8")
    assert shown.count("=== epoch") == 15 and shown.count("SRC ") == 60 and "HYP " in shown
    assert (version / "attention" / "epoch14.png").stat().st_size > 1000
    ckpt = next((version / "checkpoints").glob("epoch*.ckpt"))
    main(["test", "--config", config, *args, "--ckpt_path", str(ckpt)])
    out = predict_rows(config, str(ckpt), '["大狗看小猫。", "", "大狗看蛇。"]', *args, output="zh_en.jsonl")
    assert out[0]["translation"].startswith("big dog sees small cat"), out[0]
    assert "empty line" in out[1]["error"]
    assert "1 of 5 source tokens unseen in training, read as <unk>: '蛇'" == out[2]["warning"]
    assert out[2]["translation"]


def test_tatoeba_split_keeps_every_translation_of_a_source_on_one_side(env, tmp_path, monkeypatch):
    """Tatoeba repeats a source sentence with other translations: the split draws sources, and validation / test
    score each source once against all of its translations."""
    rows = [r for r in parallel_sentences(200, seed=7)]
    lines = [f"{r['en']}\t{r['zh']}\tCC-BY" for r in rows]
    lines += [f"{r['en'].rstrip('.')} again.\t{r['zh']}\tCC-BY" for r in rows[:60]]  # same Chinese, 2nd English
    local = tmp_path / "local"
    (local / "cmn_eng").mkdir(parents=True)
    (local / "cmn_eng" / "cmn.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(local))
    dm = TranslationDataModule(source="cmn_eng", src_lang="zh", tgt_lang="en", min_freq=1)
    pairs = dm.read_pairs()
    sides = {split: {src for src, _ in items} for split, items in pairs.items()}
    assert not sides["train"] & sides["test"] and not sides["train"] & sides["val"] and not sides["val"] & sides["test"]
    dm.setup("fit")
    dm.setup("test")
    refs = dm.all_references("test")
    assert len(refs) == len(sides["test"]) == len(dm.datasets["test"]), "one test item per source"
    assert any(len(r) == 2 for r in refs) and all(len(r) >= 1 for r in refs)
    assert dm.references("test") == [r[0] for r in refs]
    old = TranslationDataModule(source="cmn_eng", src_lang="zh", tgt_lang="en", min_freq=1, split_by="pair")
    old_sides = {split: {src for src, _ in items} for split, items in old.read_pairs().items()}
    assert old_sides["train"] & old_sides["test"], "the pair split shares sources (why it was replaced)"


def test_interactive_translate_reads_stdin_line_by_line(env):
    """``rnnlab translate``: one source a line, its translation per line (n-best with scores on request); a bad
    line gets an error and the next is still translated."""
    import io

    from rnnlab.cli import translate

    config = str(ROOT / "configs" / "cmn_eng_seq2seq_attn.yaml")
    args = [
        *TINY,
        "--model.init_args.rnn.hidden_size=16",
        "--data.init_args.batch_size=16",
        "--data.init_args.min_freq=1",
    ]
    main(["fit", "--config", config, *args, "--trainer.max_epochs=1"])
    ckpt = str(next((env / "runs" / "cmn_eng_seq2seq_attn" / "version_0" / "checkpoints").glob("*.ckpt")))
    out = io.StringIO()
    translate(
        ["--config", config, *args, "--ckpt_path", ckpt, "--beam_size=3"], ["大狗看小猫。\n", "\n", "大狗。\n"], out
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].startswith("error: ") and lines[0] and lines[2]
    out = io.StringIO()
    translate(["--config", config, *args, "--ckpt_path", ckpt, "--beam_size", "3", "--nbest", "2"], ["大狗。"], out)
    rows = out.getvalue().splitlines()
    assert [r.split("\t")[0] for r in rows[:2]] == ["1", "2"] and rows[2] == ""
    assert float(rows[0].split("\t")[1]) >= float(rows[1].split("\t")[1])
    with pytest.raises(RnnlabError, match="--nbest must be between 1 and --beam_size"):
        translate(["--config", config, *args, "--ckpt_path", ckpt, "--beam_size=2", "--nbest=3"], [], io.StringIO())
    with pytest.raises(RnnlabError, match="holds no IMDBDataModule state"):  # another task's config
        translate(["--config", str(ROOT / "configs" / "imdb_lstm.yaml"), "--ckpt_path", ckpt], [], io.StringIO())


def test_translation_scores_compare_like_with_like():
    """Cased detokenised sacreBLEU (with its signature) and BLEU on lowercased Moses-tokenised text, as multi-bleu.perl
    scores Multi30k's *.lc.norm.tok files: casing and glued punctuation cost the first, not the second."""
    from rnnlab.metrics import translation_scores

    hyps = ["A man rides a bike.", "Two dogs are playing in the snow."]
    refs = [["a man rides a bike .", "two dogs are playing in the snow ."]]
    scores = translation_scores(hyps, refs, "en")
    assert scores["bleu_lc_tok"] == pytest.approx(100.0) and scores["bleu"] < 90  # "A" is not "a"
    assert scores["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "MosesTokenizer('en')" in scores["lc_tok"] and "tok:none" in scores["lc_tok"]
    multi = translation_scores(
        ["Ein Mann fährt mit dem Rad.", "Hallo"], [["Ein Mann fährt mit dem Rad.", "Hi"], [None, "Hallo"]], "de"
    )
    assert multi["bleu"] == pytest.approx(100.0) and multi["signature"].startswith("nrefs:var")


def test_gnmt_length_normalisation():
    from rnnlab.models.seq2seq import length_normaliser

    length = torch.tensor([1.0, 7.0])
    assert torch.allclose(length_normaliser(length, 0.6, "gnmt"), ((5 + length) / 6) ** 0.6)
    assert torch.allclose(length_normaliser(length, 1.0), length) and length_normaliser(length, 0.0).eq(1).all()
    with pytest.raises(RnnlabError, match="length_norm must be power or gnmt"):
        length_normaliser(length, 1.0, "wu")
