"""Translation benchmarks: Tatoeba zh->en, Multi30k de->en and en->fr; attention vs none; greedy vs beam search.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/translation.py                # every run below
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/translation.py cmn_eng_zh_en_attn
    python benchmarks/translation.py --table                                        # from results/translation_*.json

Each run trains on the real data, then tests the best-validation-BLEU checkpoint with greedy decoding and with beam
search (and on every test set named in the run), and writes benchmarks/results/translation_<run>.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fit_and_test, load, main, previous, test_best, write  # noqa: E402

NO_ATTN = ["--model.init_args.attention=none"]
RUNS = {  # name: (config, extra CLI arguments, extra Multi30k test sets)
    "cmn_eng_zh_en_attn": ("configs/cmn_eng_seq2seq_attn.yaml", [], []),
    "multi30k_de_en_attn": ("configs/multi30k_de_en_attn.yaml", [], []),
    "cmn_eng_zh_en_noattn": ("configs/cmn_eng_seq2seq_attn.yaml", NO_ATTN, []),
    "multi30k_en_fr_attn": ("configs/multi30k_en_fr_attn.yaml", [], ["test_2017_flickr"]),
    "multi30k_de_en_noattn": ("configs/multi30k_de_en_attn.yaml", NO_ATTN, []),
}
BEAMS = (1, 5)


def _test(run, datamodule, beam: int) -> dict:
    run.cli.model.hparams.beam_size = beam
    start = time.perf_counter()
    out = test_best(run.cli, datamodule=datamodule)
    model = run.cli.model
    return {
        "bleu": round(out["test/bleu"], 2),
        "chrf": round(out["test/chrf"], 2),
        "bleu_lc_tok": round(out["test/bleu_lc_tok"], 2),
        "ppl": round(out["test/ppl"], 3),
        "seconds": round(time.perf_counter() - start, 1),
        **getattr(model, "bleu_signature", {}),  # sacreBLEU's signature; how bleu_lc_tok tokenises
        "hypotheses": [h for _, h in model.translations.get("test", [])],  # in test order: rescore without rerunning
    }


def spread_samples(dm, translations: list, n: int = 8) -> list[dict]:
    """``n`` test translations spread over the split (Tatoeba lists its pairs shortest first)."""
    step = max(len(translations) // n, 1)
    return [
        {"source": dm.source_text("test", i), "reference": dm.references("test")[i], "hypothesis": h}
        for i, h in translations[step // 2 :: step][:n]
    ]


def run_one(name: str) -> dict:
    from rnnlab.data.translation import TranslationDataModule

    config, extra, more_sets = RUNS[name]
    run = fit_and_test(config, extra, name=name)
    dm = run.cli.datamodule
    best = run.cli.trainer.checkpoint_callback.best_model_path
    default_set = dm.test_set if dm.source == "multi30k" else "held-out 10%"
    tests = {default_set: {f"beam{b}": _test(run, dm, b) for b in BEAMS}}
    model = run.cli.model  # its last test: beam 5 on the default test set
    samples = spread_samples(dm, model.translations.get("test", []))
    for test_set in more_sets:
        args = {k: getattr(dm, k) for k in ("source", "src_lang", "tgt_lang", "lowercase", "max_len", "min_freq")}
        other = TranslationDataModule(
            **args,
            test_set=test_set,
            vocab_from=best,
            batch_size=dm.batch_size,
            root=str(dm.root),
            local_dir=dm.local_dir,
        )
        tests[test_set] = {f"beam{b}": _test(run, other, b) for b in BEAMS}
    result = {
        "run": name,
        "config": config,
        "extra": extra,
        "command": f"python main.py fit --config {config} {' '.join(extra)}".strip(),
        "direction": f"{dm.src_lang}->{dm.tgt_lang}",
        "source": dm.source,
        "tests": tests,
        "best_val_bleu": round(run.best_score, 2),
        "epochs": len(run.epochs),
        "fit_seconds": run.fit_seconds,
        "train_src_tokens_per_s": run.tokens_per_s,
        "train_pairs": len(dm.dataset("train")),
        "vocab": {"src": dm.vocab_size, "tgt": dm.tgt_vocab_size, "src_level": dm.src_level, "tgt_level": dm.tgt_level},
        "params": sum(p.numel() for p in model.parameters()),
        "model": dict(model.hparams),
        "samples": samples,
        "best_checkpoint": best,
    }
    if dm.source != "multi30k":
        result["split_by"] = dm.split_by
        result["protocol"] = (
            "seeded split by source sentence: every translation of a source on one side; "
            "validation and test score each source once against all its translations"
            if dm.split_by == "source"
            else "seeded split by pair"
        )
        result["previous"] = previous(
            f"translation_{name}",
            ("tests", "best_val_bleu", "train_pairs"),
            "seeded split by pair (14% of the test sources also in training)",
        )
    write(f"translation_{name}", result)
    return result


TUTORIALS = (  # the widely quoted PyTorch seq2seq tutorials (github bentrevett/pytorch-seq2seq), Multi30k de->en
    ("PyTorch tutorial: GRU + Bahdanau attention", 28.3),
    ("PyTorch tutorial: ConvS2S", 34.1),
    ("PyTorch tutorial: small Transformer", 36.5),
)


def published_table() -> str:
    """Multi30k de->en next to the published figures, each on its own metric."""
    r = next((x for x in load("translation_multi30k_de_en_attn.json")), None)
    if r is None:
        return "(not measured yet)"
    t = r["tests"]["test_2016_flickr"]["beam5"]
    rows = [
        "| system | metric | BLEU, test_2016_flickr de->en |",
        "|---|---|---|",
        f"| rnnlab, `configs/multi30k_de_en_attn.yaml`, beam 5 | cased detokenised sacreBLEU "
        f"(signature `{t.get('signature', 'tok:13a').replace('|', ' ')}`) | {t['bleu']:.2f} |",
    ]
    if "bleu_lc_tok" in t:
        rows.append(
            f"| rnnlab, same output | lowercased, Moses-tokenised (sacremoses), multi-bleu style | "
            f"{t['bleu_lc_tok']:.2f} |"
        )
    rows += [f"| {name} | lowercased, spaCy-tokenised (torchtext `bleu_score`) | {bleu} |" for name, bleu in TUTORIALS]
    return "\n".join(rows)


def table() -> str:
    rows = [
        "| run | data, direction | attention | test set | BLEU greedy | BLEU beam 5 | chrF beam 5 | BLEU beam 5, "
        "lowercased + Moses-tokenised | best val BLEU (greedy) | epochs | fit time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in load("translation_*.json"):
        m = r["model"]
        for test_set, t in r["tests"].items():
            if r["source"] != "multi30k":  # the split: by source sentence (multi-reference) or the earlier by pair
                test_set += " (split by source)" if r.get("split_by") == "source" else " (split by pair)"
            lc_tok = f"{t['beam5']['bleu_lc_tok']:.2f}" if "bleu_lc_tok" in t["beam5"] else "not measured"
            rows.append(
                f"| `{r['command'].removeprefix('python main.py fit --config ')}` | {r['source']} "
                f"{r['direction']} | {m['attention']} | {test_set} | {t['beam1']['bleu']:.2f} | "
                f"{t['beam5']['bleu']:.2f} | {t['beam5']['chrf']:.2f} | {lc_tok} | {r['best_val_bleu']:.2f} | "
                f"{r['epochs']} | {r['fit_seconds'] / 60:.1f} min |"
            )
    return "\n".join(rows)


def samples_table(per_run: int = 4) -> str:
    rows = ["| run | source | reference | beam-5 output |", "|---|---|---|---|"]
    for r in load("translation_*_attn.json"):
        for s in r["samples"][:per_run]:
            cells = [c.replace("|", "\\|") for c in (s["source"], s["reference"], s["hypothesis"])]
            rows.append(f"| {r['source']} {r['direction']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def resample(name: str) -> None:
    """Re-draw the samples of a finished run from its best checkpoint (beam 5 over the test set)."""
    import json

    from common import QUIET, RESULTS, ROOT
    from rnnlab.cli import RnnlabCLI

    path = RESULTS / f"translation_{name}.json"
    result = json.loads(path.read_text())
    best = result.get("best_checkpoint") or str(
        max((ROOT / "runs" / "bench" / name).glob("version_*/checkpoints/epoch*.ckpt"), key=lambda p: p.stat().st_mtime)
    )
    config, extra, _ = RUNS[name]
    cli = RnnlabCLI(
        args=["--config", config, *QUIET, *extra, "--data.init_args.vocab_from", best, "--model.init_args.beam_size=5"],
        run=False,
    )
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)
    result["samples"] = spread_samples(cli.datamodule, cli.model.translations["test"])
    result["best_checkpoint"] = best
    path.write_text(json.dumps(result, indent=2, default=str, ensure_ascii=False) + "\n")
    print(f"rewrote the samples of {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--resample"]:
        resample(sys.argv[2])
    else:
        main(__file__, run_one, table, list(RUNS))
