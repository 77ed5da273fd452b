"""Many-to-many tagging: parsers, BMES, span metrics, the CRF, masking, and each config end to end on fixtures."""

import itertools
import random
from pathlib import Path

import pytest
import torch

from conftest import predict_rows, write_conll2000, write_icwb2
from rnnlab.cli import main
from rnnlab.data.batching import pad_collate
from rnnlab.data.conll2000 import CoNLL2000DataModule, parse_conll
from rnnlab.data.segmentation import ChineseSegmentationDataModule, read_segmented, read_sinica_raw
from rnnlab.data.tagging import ptb_tokenize
from rnnlab.errors import RnnlabError
from rnnlab.metrics import SpanF1, scores, span_counts
from rnnlab.models.tagger import SequenceTagger
from rnnlab.nn.crf import CRF
from rnnlab.nn.recurrent import RecurrentSpec
from rnnlab.spans import bio_spans, bmes_to_words, words_to_bmes

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


# ------------------------------------------------------------------ parsers on official formats
def test_conll2000_both_editions_read_the_same_sentences(env, tmp_path):
    official = tmp_path / "official"
    write_conll2000(official / "conll2000", edition="official")
    nltk = CoNLL2000DataModule(edition="nltk").read_splits()
    off = CoNLL2000DataModule(edition="official", local_dir=str(official)).read_splits()
    assert nltk == off
    assert len(nltk["train"]) + len(nltk["val"]) == 120 and len(nltk["test"]) == 30
    words, tags = nltk["test"][0]
    assert len(words) == len(tags) and tags[-1] == "." and words[0][0].isupper()
    chunks = CoNLL2000DataModule(task="chunk").read_splits()
    assert {t for _, ts in chunks["train"] for t in ts} <= {"B-NP", "I-NP", "B-VP", "B-PP", "O"}


def test_conll_parser_names_a_malformed_line():
    assert parse_conll("A DT B-NP\ncat NN I-NP\n\n\nIt PRP B-NP\n", "x") == [
        (["A", "cat"], ["DT", "NN"], ["B-NP", "I-NP"]),
        (["It"], ["PRP"], ["B-NP"]),
    ]
    with pytest.raises(RnnlabError, match="line 2"):
        parse_conll("A DT B-NP\ncat NN\n", "train.txt")


def test_sinica_raw_drops_treebank_markers():
    raw = "#1:1.[4257] 一 。\n#4:4.[39030] 我們 _11:是 鄰居 ，\n#20:20.[39043] 嘉珍 抓起 ‧的 我 的 手 [+]: []:又 _2\n"
    assert read_sinica_raw(raw) == [
        ["一", "。"],
        ["我們", "是", "鄰居", "，"],
        ["嘉珍", "抓起", "我", "的", "手", "又"],
    ]


def test_sighan_format_splits_on_ascii_and_fullwidth_spaces():
    assert read_segmented("共同  创造\u3000美好\n\n  \n女士 们\n") == [["共同", "创造", "美好"], ["女士", "们"]]


def test_sighan_loader_uses_gold_test_and_official_word_list(env):
    dm = ChineseSegmentationDataModule(corpus="pku")
    words = dm.read_words()
    assert len(words["train"]) + len(words["val"]) == 120 and len(words["test"]) == 30
    dm.setup("fit")
    test = dm.datasets["test"]
    oov_chars = sum(int(t[:, 1].sum()) for t in test.targets)
    new_words = sum(ws.count("新词") for ws in words["test"])
    assert oov_chars == 2 * new_words > 0  # only the word missing from pku_training_words.utf8 is OOV


def test_lexicon_feature_marks_words_beginning_ending_and_running_through_each_character(env, tmp_path, monkeypatch):
    words = tmp_path / "words.txt"
    words.write_text("北京\n天安门\n北京天安门广场\n门\n", encoding="utf-8")  # 7 characters: over max_len
    dm = ChineseSegmentationDataModule(lexicon=[str(words)], bigrams=False)
    keys = dm.unit_keys(list("我爱北京天安门"))
    assert [k[1] for k in keys] == ["lex:-", "lex:-", "lex:B2", "lex:E2", "lex:B3", "lex:M", "lex:E3"]
    assert dm.unit_features == 2
    # the SIGHAN training word list (simplified) read as traditional for a traditional corpus
    sighan = ChineseSegmentationDataModule(lexicon=["pku"], script="traditional")
    assert "同一條" in sighan.lexicon_words() and "同一条" not in sighan.lexicon_words()
    sighan.setup("fit")
    assert sighan.unit_features == 4 and sighan.datasets["train"][0][0].shape[1] == 4
    restored = ChineseSegmentationDataModule(lexicon=["pku"], script="traditional")
    monkeypatch.setattr("rnnlab.data.segmentation.fetch", lambda *a, **k: pytest.fail("read the word list again"))
    restored._set_state(sighan.state)  # what predict does with a checkpoint's state
    assert restored.lexicon_words() == sighan.lexicon_words()
    with pytest.raises(RnnlabError, match="neither one of"):
        ChineseSegmentationDataModule(lexicon=["nosuch"]).lexicon_words()


def test_sighan_without_training_file_says_what_to_do(env, tmp_path):
    write_icwb2(tmp_path / "partial" / "icwb2" / "icwb2-data.zip", with_training=False)
    dm = ChineseSegmentationDataModule(corpus="pku", local_dir=str(tmp_path / "partial"))
    with pytest.raises(RnnlabError, match="holds only the test and gold files.*corpus sinica"):
        dm.read_words()


# ------------------------------------------------------------------ BMES, spans, metrics
def test_bmes_round_trip_on_random_segmentations():
    rng = random.Random(0)
    for _ in range(300):
        words = ["".join(rng.choice("甲乙丙丁ab") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(0, 8))]
        chars, tags = words_to_bmes(words)
        assert "".join(chars) == "".join(words) and len(tags) == len(chars)
        assert bmes_to_words(chars, tags) == words


def test_bmes_decoding_is_total_on_ill_formed_tags():
    assert bmes_to_words(list("abcde"), ["M", "E", "E", "B", "B"]) == ["ab", "c", "d", "e"]


def test_segmentation_scores_hand_worked():
    gold = words_to_bmes(["我", "爱", "北京", "天安门"])[1]
    pred = words_to_bmes(["我", "爱北京", "天安", "门"])[1]
    assert span_counts(gold, pred, "bmes") == [1, 4, 4, 0, 0]
    assert scores([1, 4, 4, 0, 0])["f1"] == pytest.approx(0.25)
    # all single characters against a gold of two words: 5 predicted, 2 gold, none right
    gold2 = words_to_bmes(["北京", "天安门"])[1]
    assert span_counts(gold2, ["S"] * 5, "bmes")[:3] == [0, 5, 2]
    # all single characters, gold too: perfect
    assert scores(span_counts(["S"] * 3, ["S"] * 3, "bmes"))["f1"] == 1.0
    # nothing predicted at all (an empty corpus of predictions): zeros, not a division error
    assert scores([0, 0, 7, 0, 3]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "oov_recall": 0.0}
    # precision 2/3, recall 2/4 -> F1 4/7; OOV recall: "天安门" is unseen and found, "北京" unseen and missed
    gold3 = words_to_bmes(["我", "爱", "北京", "天安门"])[1]
    pred3 = words_to_bmes(["我", "爱北京", "天安门"])[1]
    oov = [0, 0, 1, 1, 1, 1, 1]
    counts = span_counts(gold3, pred3, "bmes", oov)
    assert counts == [2, 3, 4, 1, 2]
    assert scores(counts)["f1"] == pytest.approx(4 / 7) and scores(counts)["oov_recall"] == 0.5


def test_bio_spans_read_like_conlleval():
    assert bio_spans(["B-NP", "I-NP", "O", "I-VP", "I-VP", "B-NP", "I-PP"]) == [
        (0, 2, "NP"),
        (3, 5, "VP"),
        (5, 6, "NP"),
        (6, 7, "PP"),
    ]
    assert bio_spans(["O", "O"]) == []


def test_span_metric_over_padded_batches_matches_sentence_counts():
    labels = ["B", "E", "M", "S"]
    metric = SpanF1(labels, "bmes")
    ids = {t: i for i, t in enumerate(labels)}
    gold = [words_to_bmes(["我", "爱", "北京", "天安门"])[1], words_to_bmes(["北京"])[1]]
    pred = [words_to_bmes(["我", "爱北京", "天安门"])[1], ["S", "S"]]
    T = 7
    target = torch.full((2, T), -100)
    preds = torch.zeros(2, T, dtype=torch.long)
    for b in range(2):
        target[b, : len(gold[b])] = torch.tensor([ids[t] for t in gold[b]])
        preds[b, : len(pred[b])] = torch.tensor([ids[t] for t in pred[b]])
    metric.update(preds, target)
    out = metric.compute()
    p, r = 2 / 5, 2 / 5
    assert float(out["precision"]) == pytest.approx(p) and float(out["recall"]) == pytest.approx(r)


# ------------------------------------------------------------------ CRF against brute force
def brute_force(crf: CRF, emissions: torch.Tensor):
    T, K = emissions.shape
    scores_ = {}
    for path in itertools.product(range(K), repeat=T):
        s = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, path[t]] for t in range(T))
        s = s + sum(crf.transitions[path[t - 1], path[t]] for t in range(1, T))
        scores_[path] = s
    log_z = torch.logsumexp(torch.stack(list(scores_.values())), 0)
    return scores_, log_z


@pytest.mark.parametrize("T,K", [(1, 3), (3, 2), (4, 3)])
@torch.no_grad()
def test_crf_likelihood_and_viterbi_equal_brute_force(T, K):
    torch.manual_seed(T * 10 + K)
    crf = CRF(K)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    # a batch of two: the second sequence is padded to T + 2 with garbage emissions that must not count
    em = torch.randn(2, T + 2, K)
    mask = torch.zeros(2, T + 2, dtype=torch.bool)
    mask[0, :] = True
    mask[1, :T] = True
    for b, length in ((0, T + 2), (1, T)):
        all_scores, log_z = brute_force(crf, em[b, :length])
        best = max(all_scores, key=lambda p: float(all_scores[p]))
        for path in list(all_scores)[:5] + [best]:
            tags = torch.zeros(2, T + 2, dtype=torch.long)
            tags[b, :length] = torch.tensor(path)
            llh = crf.log_likelihood(em, tags, mask)[b]
            assert float(llh) == pytest.approx(float(all_scores[path] - log_z), abs=1e-4)
        decoded = crf.decode(em, mask)[b]
        assert tuple(decoded[:length].tolist()) == best
        assert decoded[length:].eq(0).all()


# ------------------------------------------------------------------ the model
@pytest.mark.parametrize("crf,char_encoder", [(False, "lstm"), (True, "cnn")])
def test_a_sentence_alone_and_in_a_padded_batch_gets_the_same_tags(crf, char_encoder):
    torch.manual_seed(0)
    model = SequenceTagger(
        vocab_size=30,
        num_classes=5,
        char_vocab_size=12,
        unit_features=1,
        embedding_dim=8,
        char_encoder=char_encoder,
        char_embedding_dim=4,
        char_hidden_size=4,
        crf=crf,
        rnn=RecurrentSpec(hidden_size=8),
    ).eval()
    g = torch.Generator().manual_seed(1)
    sents = []
    for length in (3, 7, 5):
        words = torch.randint(2, 30, (length, 1), generator=g)
        chars = torch.randint(2, 12, (length, 6), generator=g)
        chars[:, 4:] = 0  # shorter words
        sents.append(torch.cat([words, chars], 1))
    batch = pad_collate([(s, torch.zeros(len(s), 2, dtype=torch.long), i) for i, s in enumerate(sents)])
    with torch.no_grad():
        together = model.decode(model(batch.tokens, batch.lengths), batch.lengths)
        scores_batch = model(batch.tokens, batch.lengths)
        for i, s in enumerate(sents):
            alone_scores = model(s[None, :, :5], torch.tensor([len(s)]))  # no padding, narrower char padding
            alone = model.decode(alone_scores, torch.tensor([len(s)]))
            assert torch.allclose(alone_scores[0], scores_batch[i, : len(s)], atol=1e-5)
            assert torch.equal(alone[0], together[i, : len(s)])


def test_char_encoder_without_characters_is_a_clear_error():
    with pytest.raises(RnnlabError, match="char_features"):
        SequenceTagger(vocab_size=10, num_classes=3, char_vocab_size=0, char_encoder="lstm")


def test_ptb_tokenizer_splits_like_the_treebank():
    assert ptb_tokenize("\"We don't,\" said Mr. Lee of the U.S. unit's $5 offer (50%).") == [
        "``",
        "We",
        "do",
        "n't",
        ",",
        "''",
        "said",
        "Mr.",
        "Lee",
        "of",
        "the",
        "U.S.",
        "unit",
        "'s",
        "$",
        "5",
        "offer",
        "(",
        "50",
        "%",
        ")",
        ".",
    ]


# ------------------------------------------------------------------ configs end to end
@pytest.mark.parametrize(
    "config",
    [
        "conll2000_pos_bilstm",
        "conll2000_pos_bilstm_crf",
        "sinica_cws_bilstm",
        "sinica_cws_bilstm_lexicon",
        "pku_cws_bilstm",
    ],
)
def test_config_fast_dev_run(env, config):
    main(["fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), *TINY, "--trainer.fast_dev_run", "true"])


def test_pos_tagger_learns_and_predicts_raw_text(env):
    config = str(ROOT / "configs" / "conll2000_pos_bilstm.yaml")
    main(
        [
            "fit",
            "--config",
            config,
            *TINY,
            "--trainer.max_epochs",
            "6",
            "--data.init_args.batch_size",
            "8",
            "--model.init_args.optimizer.init_args.lr",
            "0.02",
        ]
    )
    version = env / "runs" / "conll2000_pos_bilstm" / "version_0"
    rows = list((version / "metrics.csv").read_text().splitlines())
    header = rows[0].split(",")
    accs = [float(r.split(",")[header.index("val/acc")]) for r in rows[1:] if r.split(",")[header.index("val/acc")]]
    assert max(accs) > 0.95, accs
    ckpt = version / "checkpoints" / "last.ckpt"
    rows = predict_rows(
        config, str(ckpt), '["The stock rose 3%.", "  ", "Xylophones fell."]', *TINY, output="pos.jsonl"
    )
    assert rows[0]["output"].startswith("The/DT stock/NN rose/VBD 3/CD %/") and rows[0]["output"].endswith("./.")
    assert "empty" in rows[1]["error"]
    assert "unseen in training: 'Xylophones'" in rows[2]["warning"] and rows[2]["output"].endswith("./.")


def test_segmenter_learns_and_splits_raw_text(env):
    config = str(ROOT / "configs" / "sinica_cws_bilstm.yaml")
    main(
        [
            "fit",
            "--config",
            config,
            *TINY,
            "--trainer.max_epochs",
            "8",
            "--data.init_args.batch_size",
            "8",
            "--model.init_args.optimizer.init_args.lr",
            "0.02",
            "--early_stopping.patience",
            "20",
        ]
    )
    version = env / "runs" / "sinica_cws_bilstm" / "version_0"
    text = (version / "metrics.csv").read_text().splitlines()
    header = text[0].split(",")
    f1 = [float(r.split(",")[header.index("val/f1")]) for r in text[1:] if r.split(",")[header.index("val/f1")]]
    assert max(f1) > 0.9, f1
    rows = predict_rows(
        config,
        str(version / "checkpoints" / "last.ckpt"),
        '["我們住在同一條巷子", "他是我們同學。", "我们住在同一条巷子"]',
        *TINY,
        output="cws.jsonl",
    )
    assert rows[0]["output"] == "我們 住在 同一條 巷子"
    assert rows[1]["output"] == "他 是 我們 同學 。"
    assert rows[2]["output"] == "我们 住在 同一条 巷子" and "warning" not in rows[2]  # simplified, read as traditional
