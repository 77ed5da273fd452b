"""Names benchmarks on the real data: Chinese name -> gender (namesex, its 10-fold protocol) and name -> language.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/names.py gender     # 10 folds + baselines -> names_gender.json
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/names.py gender_features  # + components, pinyin tokens
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/names.py gender_char2vec[_modern]  # pre-trained char vectors
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/names.py gender_hybrid  # + a generative expert p(name | sex)
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/names.py gender_config namesex_hybrid  # a config's 10 folds
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/names.py gender_learning_curve  # accuracy vs training names
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/names.py language   # tutorial recipe vs ours (5 splits)
    python benchmarks/names.py --table

Gender: every fold trains ``configs/namesex_bigru.yaml`` on the nine other folds (5% of them held out to pick the
checkpoint), tests on its fold and on ``testdata.csv``; the course recipe (``configs/chinese_names_rnn.yaml`` on
namesex, seeded 1,000-name test sample) and a logistic regression on character unigrams + the whole name (the
package README's L2 baseline) run beside it.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fit_and_test, load, test_best, write  # noqa: E402

PUBLISHED = {
    "random forest, word2vec features (namesex README)": (0.9486, 0.0071),
    "L2 logistic regression (namesex README)": (0.8957, None),
}


def fit_and_test_splits(config: str, extra: list[str], extra_splits: tuple[str, ...] = ()) -> dict:
    run = fit_and_test(config, extra)
    out = {
        "fit_seconds": run.fit_seconds,
        "epochs": run.cli.trainer.current_epoch,
        "test_acc": run.test["test/acc"],
        "test_f1": run.test["test/f1"],
    }
    for split in extra_splits:
        loader = run.cli.datamodule._loader(split, shuffle=False)
        res = test_best(run.cli, dataloaders=loader)
        out.update({f"{split}_acc": res["test/acc"], f"{split}_f1": res["test/f1"]})
    return out


def logistic_regression_folds(
    char_features: tuple[str, ...] = (), positions: bool = False, train_size: int | None = None
) -> list[float]:
    """Character unigrams + the whole name (+ the ``char_features`` tokens of each character, + each character
    marked with its position if ``positions``), L2 logistic regression, namesex's 10 folds; ``train_size``: that
    many of the nine training folds' names (seeded sample), else all."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from rnnlab.data.names import CharFeatures, ChineseNamesDataModule

    features = CharFeatures(list(char_features))

    def analyzer(name: str) -> list[str]:
        marked = [f"{i}:{c}" for i, c in enumerate(name)] if positions else []
        return list(name) + [f"<{name}>"] + marked + [t for c in name for t in features.tokens(c)]

    accs = []
    for fold in range(10):  # the datamodule's splits: the same (sampled) names as the networks train on
        splits, _ = ChineseNamesDataModule(test_fold=fold, train_size=train_size).read_splits()
        train, test = splits["train"] + splits["val"], splits["test"]
        vec = CountVectorizer(analyzer=analyzer)
        x = vec.fit_transform([n for n, _ in train])
        clf = LogisticRegression(C=1.0, max_iter=3000).fit(x, [y for _, y in train])
        accs.append(float(clf.score(vec.transform([n for n, _ in test]), [y for _, y in test])))
    return accs


def testdata(b: dict) -> str:
    """``testdata.csv`` accuracy, and on its 72 names not in the main file where measured (30 of the 102 are)."""
    text = f"testdata.csv {100 * b['testdata_acc_mean']:.1f}%"
    if "testdata_unseen_acc_mean" in b:
        text += f" (its 72 unseen names {100 * b['testdata_unseen_acc_mean']:.1f}%)"
    return text


def gender() -> None:
    bigru = ten_folds("configs/namesex_bigru.yaml")
    course = fit_and_test_splits("configs/chinese_names_rnn.yaml", ["--data.init_args.source=namesex"])
    lr = logistic_regression_folds()
    write(
        "names_gender",
        {
            "command": "python benchmarks/names.py gender",
            "bigru_10fold": bigru,
            "course_recipe_sample": course,
            "logistic_regression_10fold": {
                "mean_acc": statistics.mean(lr),
                "std_acc": statistics.stdev(lr),
                "folds": lr,
            },
            "published": PUBLISHED,
        },
    )
    print(table())


def ten_folds(config: str, extra: tuple[str, ...] = ()) -> dict:
    folds = []
    for fold in range(10):
        r = fit_and_test_splits(config, [*extra, f"--data.init_args.test_fold={fold}"], ("testdata", "testdata_unseen"))
        folds.append(r)
        print(
            f"fold {fold}: test acc {r['test_acc']:.4f}  testdata acc {r['testdata_acc']:.4f}  ({r['fit_seconds']} s)",
            flush=True,
        )
    accs = [r["test_acc"] for r in folds]
    return {
        "config": config,
        "extra": list(extra),
        "mean_acc": statistics.mean(accs),
        "std_acc": statistics.stdev(accs),
        "mean_f1": statistics.mean(r["test_f1"] for r in folds),
        "testdata_acc_mean": statistics.mean(r["testdata_acc"] for r in folds),
        "testdata_unseen_acc_mean": statistics.mean(r["testdata_unseen_acc"] for r in folds),
        "fit_seconds_per_fold": statistics.mean(r["fit_seconds"] for r in folds),
        "folds": folds,
    }


def modern_chinese_corpus() -> str:
    """The modern Chinese text here, one sentence a line, in traditional characters: the SIGHAN 2005 PKU and MSR
    gold test files (OpenCC s2t) and the Sinica Treebank sample (about 0.5M characters; no names of namesex's)."""
    import opencc

    from rnnlab.data.segmentation import read_member, read_segmented, read_sinica_raw
    from rnnlab.data.sources import fetch

    cc, lines = opencc.OpenCC("s2t"), []
    icwb2 = fetch("icwb2")["icwb2-data.zip"]
    for corpus in ("pku", "msr"):
        lines += [cc.convert("".join(s)) for s in read_segmented(read_member(icwb2, f"gold/{corpus}_test_gold.utf8"))]
    sinica = fetch("sinica_treebank")["sinica_treebank.zip"]
    lines += ["".join(s) for s in read_sinica_raw(read_member(sinica, "sinica_treebank/raw"))]
    path = Path("data/modern_zh_chars.txt")
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


CHAR2VEC = {  # corpus -> extra word2vec arguments (on configs/tang_char2vec.yaml) and the vectors' path
    "tang": ([], "runs/word2vec/tang_chars.pt"),
    "modern": (
        [
            "--trainer.max_epochs=15",
            "--data.init_args.min_count=2",
            "--model.init_args.export_path=runs/word2vec/modern_chars.pt",
        ],
        "runs/word2vec/modern_chars.pt",
    ),
}


def gender_char2vec(corpus: str = "tang") -> None:
    """Character vectors (configs/tang_char2vec.yaml: from the Tang poems, or ``modern``: from
    :func:`modern_chinese_corpus`), then the BiGRU's 10 folds from them."""
    import time

    start = time.perf_counter()
    extra, vectors = CHAR2VEC[corpus]
    if corpus == "modern":
        extra = [*extra, f"--data.init_args.corpus={modern_chinese_corpus()}"]
    pre = fit_and_test("configs/tang_char2vec.yaml", extra, name=f"{corpus}_char2vec")
    pretrain = {
        "config": "configs/tang_char2vec.yaml",
        "extra": extra,
        "val_loss": pre.test["test/loss"],
        "fit_seconds": pre.fit_seconds,
        "vocab": len(pre.cli.model.words),
        "neighbours": pre.cli.model.report(),
    }
    print(pretrain["neighbours"], flush=True)
    suffix = "" if corpus == "tang" else f"_{corpus}"
    folds = ten_folds("configs/namesex_bigru_char2vec.yaml", (f"--model.init_args.pretrained_embeddings={vectors}",))
    write(
        f"names_gender_char2vec{suffix}",
        {
            "command": f"python benchmarks/names.py gender_char2vec{suffix}",
            "corpus": corpus,
            "pretrain": pretrain,
            "bigru_10fold": folds,
            "total_seconds": round(time.perf_counter() - start, 1),
        },
    )
    print(table())


def gender_hybrid(ngram_order: int = 0) -> None:
    """``configs/namesex_bigru.yaml`` with a ``GenerativeExpert``: the geometric mean of the BiGRU's posterior and that
    of a GRU language model of the name given the sex, namesex's 10 folds; ``ngram_order`` > 0 adds the counted
    n-gram expert of that order (results in ``names_gender_hybrid_ngram<order>.json``)."""
    flags = hybrid_flags(ngram_order)
    suffix = f"_ngram{ngram_order}" if ngram_order else ""
    write(
        f"names_gender_hybrid{suffix}",
        {
            "command": f"python benchmarks/names.py gender_hybrid {ngram_order or ''}".strip(),
            "ngram_order": ngram_order,
            "bigru_10fold": ten_folds("configs/namesex_bigru.yaml", flags),
        },
    )
    print(table())


def gender_config(name: str) -> None:
    """``configs/<name>.yaml`` as it is, namesex's 10 folds (results in ``names_gender_<name>.json``)."""
    write(
        f"names_gender_{name}",
        {
            "command": f"python benchmarks/names.py gender_config {name}",
            "bigru_10fold": ten_folds(f"configs/{name}.yaml"),
        },
    )
    print(table())


def hybrid_flags(ngram_order: int) -> list[str]:
    """The experts of :func:`gender_hybrid` on the command line: a GRU language model of the name given the sex (and
    an n-gram model of that order)."""
    flags = ["--model.init_args.experts+=GenerativeExpert", "--model.init_args.experts.cell=gru"]
    if ngram_order:
        flags += ["--model.init_args.experts+=NgramExpert", f"--model.init_args.experts.order={ngram_order}"]
    return flags


GENDER_CONFIGS = {  # configs/<name>.yaml -> what the README table calls it
    "namesex_hybrid": "four experts, geometric mean: the BiGRU, a GRU language model of the name given the sex, a "
    "counted character unigram model of it, and a logistic regression on the bag of tokens and the "
    "whole name, fitted when fit starts; each character followed by its components and pinyin"
}
NGRAM = {1: "unigram", 2: "bigram", 3: "trigram"}
FEATURES = ("components", "pinyin")


def gender_features() -> None:
    """Each character followed by its components and pinyin (``char_features``): the BiGRU's 10 folds, and the
    logistic regression with and without the same tokens."""
    flag = f"--data.init_args.char_features=[{', '.join(FEATURES)}]"
    lr_plain, lr_feat = logistic_regression_folds(), logistic_regression_folds(FEATURES)
    write(
        "names_gender_features",
        {
            "command": "python benchmarks/names.py gender_features",
            "features": list(FEATURES),
            "bigru_10fold": ten_folds("configs/namesex_bigru.yaml", (flag,)),
            "logistic_regression_10fold": {
                "mean_acc": statistics.mean(lr_plain),
                "std_acc": statistics.stdev(lr_plain),
            },
            "logistic_regression_features_10fold": {
                "mean_acc": statistics.mean(lr_feat),
                "std_acc": statistics.stdev(lr_feat),
            },
        },
    )
    print(table())


CURVE_SIZES = (1200, 2400, 4800)  # training names (validation included) below all of the nine folds


def names_for(sizes: list[float], means: list[float], target: float = 0.92) -> tuple[float, float | None]:
    """The accuracy gained by the last doubling of the training names, and how many names ``target`` would take if
    every further doubling gained as much: a lower bound, since learning curves flatten (None: already there)."""
    import math

    gain = (means[-1] - means[-2]) / math.log2(sizes[-1] / sizes[-2])
    if means[-1] >= target:
        return gain, None
    return gain, sizes[-1] * 2 ** ((target - means[-1]) / gain) if gain > 0 else math.inf


def gender_learning_curve() -> None:
    """Accuracy against the number of training names on namesex's 10 folds (same test folds, seeded samples of the
    nine training folds): the best linear model (characters, their positions, the whole name, components, pinyin)
    at 1/8, 1/4, 1/2 and all of them, and ``configs/namesex_hybrid.yaml`` at the three smaller sizes beside its
    full-data 10 folds (``names_gender_namesex_hybrid.json``); :func:`names_for` reads off how many names 92% would
    take at least."""
    from rnnlab.data.names import read_namesex
    from rnnlab.data.sources import fetch

    rows = read_namesex(fetch("namesex")["namesex_data_v2.csv"])
    full = statistics.mean(sum(f != fold for *_, f in rows) for fold in range(10))  # 9,657 names on average
    sizes = [*CURVE_SIZES, full]
    linear = [logistic_regression_folds(FEATURES, positions=True, train_size=n) for n in CURVE_SIZES]
    linear.append(logistic_regression_folds(FEATURES, positions=True))
    for n, accs in zip(sizes, linear):
        print(f"linear, {n:.0f} names: {statistics.mean(accs):.4f}", flush=True)
    hybrid = [
        [
            f["test_acc"]
            for f in ten_folds("configs/namesex_hybrid.yaml", (f"--data.init_args.train_size={n}",))["folds"]
        ]
        for n in CURVE_SIZES
    ]
    measured = load("names_gender_namesex_hybrid.json")
    if not measured:
        raise SystemExit("run `python benchmarks/names.py gender_config namesex_hybrid` first (the full-data point)")
    hybrid.append([f["test_acc"] for f in measured[0]["bigru_10fold"]["folds"]])
    curves = {}
    for key, accs in (("linear", linear), ("namesex_hybrid", hybrid)):
        means = [statistics.mean(a) for a in accs]
        gain, need = names_for(sizes, means)
        curves[key] = {
            "sizes": sizes,
            "mean_acc": means,
            "std_acc": [statistics.stdev(a) for a in accs],
            "folds": accs,
            "gain_per_doubling": gain,
            "names_for_92_at_least": need,
        }
    write("names_gender_learning_curve", {"command": "python benchmarks/names.py gender_learning_curve", **curves})
    print(curve_table())


def curve_table() -> str:
    r = load("names_gender_learning_curve.json")
    if not r:
        return "(not measured yet)"
    x = r[0]
    sizes = x["linear"]["sizes"]
    rows = [
        "| model | " + " | ".join(f"{n:,.0f} names" for n in sizes) + " | gained by the last doubling | names "
        "for 92% if each further doubling gained as much (a lower bound) |",
        "|---|" + "---|" * (len(sizes) + 2),
    ]
    for key, label in (
        ("linear", "logistic regression: characters, their positions, the whole name, components, pinyin"),
        ("namesex_hybrid", "`configs/namesex_hybrid.yaml` (four experts)"),
    ):
        c = x[key]
        gain, need = c["gain_per_doubling"], c["names_for_92_at_least"]
        rows.append(
            f"| {label} | "
            + " | ".join(f"{100 * m:.2f}% (std {100 * s:.2f})" for m, s in zip(c["mean_acc"], c["std_acc"]))
            + f" | {100 * gain:+.2f} points | "
            + (f"{need:,.0f}" if need else "reached")
            + " |"
        )
    return "\n".join(rows)


def char_ngram_naive_bayes(
    train: list[tuple[str, int]], test: list[tuple[str, int]], num_classes: int, order: int = 3, discount: float = 0.9
) -> dict:
    """A classical baseline: one character ``order``-gram language model per class (interpolated absolute
    discounting), ``argmax_c log p(name | c) + log p(c)``. Order and discount were chosen on the seed-42 validation
    split (orders 3-5, discounts 0.5-0.9)."""
    import math
    from collections import Counter, defaultdict

    from sklearn.metrics import f1_score

    counts = [defaultdict(Counter) for _ in range(num_classes)]
    prior, symbols = Counter(y for _, y in train), set()
    for name, y in train:
        s = "^" * (order - 1) + name + "$"
        for i in range(order - 1, len(s)):
            symbols.add(s[i])
            for k in range(order):
                counts[y][s[i - k : i]][s[i]] += 1
    totals = [{h: sum(c.values()) for h, c in by_class.items()} for by_class in counts]

    def log_p(name: str, y: int) -> float:
        s, total = "^" * (order - 1) + name + "$", math.log(prior[y] / len(train))
        for i in range(order - 1, len(s)):
            p = 1.0 / (len(symbols) + 1)
            for k in range(order):  # from the unigram up: discounted counts, the rest to the shorter history
                h = s[i - k : i]
                if h not in counts[y]:
                    break
                c = counts[y][h]
                p = (max(c.get(s[i], 0) - discount, 0) + discount * len(c) * p) / totals[y][h]
            total += math.log(p)
        return total

    pred = [max(range(num_classes), key=lambda y: log_p(name, y)) for name, _ in test]
    gold = [y for _, y in test]
    return {
        "order": order,
        "discount": discount,
        "test_acc": sum(p == g for p, g in zip(pred, gold)) / len(gold),
        "test_f1": float(f1_score(gold, pred, average="macro")),
    }


def naive_bayes_language(seed: int = 42) -> dict:
    from rnnlab.data.names import NameLanguageDataModule

    splits, labels = NameLanguageDataModule(ascii=False, seed=seed).read_splits()
    return char_ngram_naive_bayes(splits["train"], splits["test"], len(labels))


SPLIT_SEEDS = (42, 1, 2, 3, 4)


# key -> (config, its extra arguments, what the README table calls it)
REFIT = "configs/recipes/refit.yaml"  # train on train + val, no early stopping, keep the last epoch
LANGUAGE_RUNS = {
    "names_rnn": ("names_rnn", [], "tutorial recipe: one-hot, RNN 128"),
    "names_lstm": ("names_lstm", [], "Unicode chars, BiGRU 256, sqrt class weights"),
    "names_hybrid": (
        "names_hybrid",
        [],
        "three experts: the BiGRU without class weights, a GRU language model of the "
        "name given the language and a counted character trigram model of it; geometric mean of their "
        "posteriors; EMA",
    ),
    "names_hybrid_no_ngram": (
        "names_hybrid",
        ["--model.init_args.experts=[{class_path: GenerativeExpert, init_args: {cell: gru}}]"],
        "the same without the trigram expert: BiGRU and GRU language model",
    ),
    "names_hybrid_refit": (
        "names_hybrid",
        [f"--config={REFIT}", "--trainer.max_epochs=12"],
        "the three experts trained on train + val (the 90% of a 90/10 split) for a fixed 12 "
        "epochs, the last checkpoint",
    ),
}


def language(keys: list[str]) -> None:
    """The tutorial recipe on the seed-42 split; the other configs of :data:`LANGUAGE_RUNS` and the n-gram baseline
    on five stratified splits (``--data.init_args.seed`` = ``--seed_everything``): the spread between splits is
    larger than most changes, and the rare languages (7-10 test names each) move the macro-F1 by a few points.
    ``keys`` (default: all) re-measures only those rows; the others are kept from the JSON."""
    old = load("names_language.json")
    results: dict = {k: v for k, v in (old[0] if old else {}).items() if k in LANGUAGE_RUNS or k.startswith("naive")}
    for key in keys or [*LANGUAGE_RUNS, "naive_bayes_trigram"]:
        if key == "naive_bayes_trigram":
            results[key] = summarise([{"seed": seed, **naive_bayes_language(seed)} for seed in SPLIT_SEEDS])
            continue
        config, extra, _ = LANGUAGE_RUNS[key]
        if key == "names_rnn":
            results[key] = fit_and_test_splits(f"configs/{config}.yaml", extra)
            print(key, results[key], flush=True)
            continue
        runs = []
        for seed in SPLIT_SEEDS:
            runs.append(
                {
                    "seed": seed,
                    **fit_and_test_splits(
                        f"configs/{config}.yaml", [f"--data.init_args.seed={seed}", f"--seed_everything={seed}", *extra]
                    ),
                }
            )
            print(key, runs[-1], flush=True)
        results[key] = summarise(runs)
    write(
        "names_language", {"command": "python benchmarks/names.py language [KEY ...]", "seeds": SPLIT_SEEDS, **results}
    )
    print(table())


def summarise(runs: list[dict]) -> dict:
    acc, f1 = [r["test_acc"] for r in runs], [r["test_f1"] for r in runs]
    return {
        "mean_acc": statistics.mean(acc),
        "std_acc": statistics.stdev(acc),
        "mean_f1": statistics.mean(f1),
        "std_f1": statistics.stdev(f1),
        "min_acc": min(acc),
        "min_f1": min(f1),
        "runs": runs,
    }


LANGUAGE_ROWS = (
    *((key, label) for key, (_, _, label) in LANGUAGE_RUNS.items()),
    ("naive_bayes_trigram", "character trigram language model per language, naive Bayes (baseline)"),
)


def table() -> str:
    rows = []
    for r in load("names_gender.json"):
        b, lr, c = r["bigru_10fold"], r["logistic_regression_10fold"], r["course_recipe_sample"]
        rows += [
            "| task | method | protocol | accuracy | macro-F1 | other | time |",
            "|---|---|---|---|---|---|---|",
            f"| name -> gender (namesex) | `configs/namesex_bigru.yaml` (char BiGRU) | 10-fold | "
            f"{100 * b['mean_acc']:.2f}% (std {100 * b['std_acc']:.2f}) | {100 * b['mean_f1']:.2f}% | "
            f"{testdata(b)} (mean of the 10 fold models) | "
            f"{b['fit_seconds_per_fold']:.0f} s a fold |",
            f"| name -> gender (namesex) | logistic regression, char unigrams + name (ours) | 10-fold | "
            f"{100 * lr['mean_acc']:.2f}% (std {100 * lr['std_acc']:.2f}) | | | |",
        ]
        for method, (acc, std) in r["published"].items():
            rows.append(
                f"| name -> gender (namesex) | {method} | 10-fold | {100 * acc:.2f}%"
                + (f" (std {100 * std:.2f})" if std else "")
                + " | | published | |"
            )
        for x in load("names_gender_char2vec*.json"):
            b2 = x["bigru_10fold"]
            corpus = x.get("corpus", "tang")
            source = {
                "tang": "Tang-poem character vectors",
                "modern": "character vectors of 0.5M characters of "
                "modern Chinese (SIGHAN PKU + MSR test text, Sinica sample), `python benchmarks/names.py "
                "gender_char2vec_modern`",
            }[corpus]
            flag = "" if corpus == "tang" else f" `{' '.join(b2['extra'])}`"
            rows.append(
                f"| name -> gender (namesex) | `{b2['config']}`{flag} (char BiGRU, embedding from {source}) | "
                f"10-fold | {100 * b2['mean_acc']:.2f}% (std {100 * b2['std_acc']:.2f}) | "
                f"{100 * b2['mean_f1']:.2f}% | {testdata(b2)} | "
                f"{b2['fit_seconds_per_fold']:.0f} s a fold + {x['pretrain']['fit_seconds'] / 60:.1f} min "
                f"pre-training |"
            )
        for x in load("names_gender_features.json"):
            b3, lr3 = x["bigru_10fold"], x["logistic_regression_features_10fold"]
            rows.append(
                f"| name -> gender (namesex) | `configs/namesex_bigru.yaml` + `char_features: [components, "
                f"pinyin]` (each character followed by its components and pinyin) | 10-fold | "
                f"{100 * b3['mean_acc']:.2f}% (std {100 * b3['std_acc']:.2f}) | {100 * b3['mean_f1']:.2f}% | "
                f"{testdata(b3)} | {b3['fit_seconds_per_fold']:.0f} s a fold |"
            )
            rows.append(
                f"| name -> gender (namesex) | logistic regression, char unigrams + name + components + pinyin "
                f"(ours) | 10-fold | {100 * lr3['mean_acc']:.2f}% (std {100 * lr3['std_acc']:.2f}) | | | |"
            )
        for x in load("names_gender_hybrid*.json"):
            b4, order = x["bigru_10fold"], x.get("ngram_order", 0)
            flags = " ".join(f"`{f}`" for f in hybrid_flags(order))
            expert = f", and a counted character {NGRAM[order]} model of it" if order else ""
            rows.append(
                f"| name -> gender (namesex) | `configs/namesex_bigru.yaml` {flags} (the BiGRU and a GRU language model of the name given the sex{expert}, geometric "
                "mean) | 10-fold | "
                f"{100 * b4['mean_acc']:.2f}% (std {100 * b4['std_acc']:.2f}) | {100 * b4['mean_f1']:.2f}% | "
                f"{testdata(b4)} | {b4['fit_seconds_per_fold']:.0f} s a fold |"
            )
        for name, label in GENDER_CONFIGS.items():
            for x in load(f"names_gender_{name}.json"):
                b5 = x["bigru_10fold"]
                rows.append(
                    f"| name -> gender (namesex) | `configs/{name}.yaml` ({label}) | 10-fold | "
                    f"**{100 * b5['mean_acc']:.2f}%** (std {100 * b5['std_acc']:.2f}) | "
                    f"{100 * b5['mean_f1']:.2f}% | "
                    f"{testdata(b5)} | "
                    f"{b5['fit_seconds_per_fold']:.0f} s a fold |"
                )
        rows.append(
            f"| name -> gender (namesex) | `configs/chinese_names_rnn.yaml` (course recipe: one-hot, RNN) | "
            f"seeded 1,000-name test | {100 * c['test_acc']:.2f}% | {100 * c['test_f1']:.2f}% | | "
            f"{c['fit_seconds']:.0f} s |"
        )
    if not rows:
        rows += ["| task | method | protocol | accuracy | macro-F1 | other | time |", "|---|---|---|---|---|---|---|"]
    for r in load("names_language.json"):
        for name, label in LANGUAGE_ROWS:
            x = r.get(name)
            if x is None:
                continue
            config, extra, _ = LANGUAGE_RUNS.get(name, (None, [], ""))
            flags = "".join(f" + `{e[9:]}`" if e.startswith("--config=") else f" `{e}`" for e in extra)
            method = f"`configs/{config}.yaml`{flags} ({label})" if config else label
            if "runs" not in x:  # one run on the seed-42 split
                rows.append(
                    f"| name -> language (18) | {method} | stratified 80/10/10 (seed 42) | "
                    f"{100 * x['test_acc']:.2f}% | {100 * x['test_f1']:.2f}% | | {x['fit_seconds']:.0f} s |"
                )
                continue
            fit = statistics.mean(run["fit_seconds"] for run in x["runs"]) if "fit_seconds" in x["runs"][0] else None
            b = "**" if name == "names_hybrid" else ""
            split = "90/10 (val trained on)" if f"--config={REFIT}" in extra else "80/10/10"
            rows.append(
                f"| name -> language (18) | {method} | stratified {split}, mean of 5 splits (seeds "
                f"{', '.join(str(run['seed']) for run in x['runs'])}) | {b}{100 * x['mean_acc']:.2f}%{b} "
                f"(std {100 * x['std_acc']:.2f}, worst {100 * x['min_acc']:.2f}) | {b}{100 * x['mean_f1']:.2f}%{b} "
                f"(std {100 * x['std_f1']:.2f}, worst {100 * x['min_f1']:.2f}) | seed 42: "
                f"{100 * x['runs'][0]['test_acc']:.2f}% / {100 * x['runs'][0]['test_f1']:.2f}% | "
                + (f"{fit:.0f} s a split |" if fit else "|")
            )
    return "\n".join(rows)


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else "--table"
    {
        "gender": gender,
        "gender_char2vec": gender_char2vec,
        "gender_char2vec_modern": lambda: gender_char2vec("modern"),
        "gender_features": gender_features,
        "gender_config": lambda: gender_config(sys.argv[2]),
        "gender_learning_curve": gender_learning_curve,
        "gender_hybrid": lambda: gender_hybrid(int(sys.argv[2]) if len(sys.argv) > 2 else 0),
        "language": lambda: language(sys.argv[2:]),
    }.get(arg, lambda: print(table()))()
