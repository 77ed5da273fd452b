"""Span metrics for tagging: word segmentation scored like the SIGHAN ``score`` script, chunks like ``conlleval``.

A predicted span (a word's characters, or a typed chunk) is correct when the gold sequence has exactly the same span.
Precision = correct / predicted spans, recall = correct / gold spans, F1 their harmonic mean; OOV recall = correct
gold spans that were unseen in training / all such gold spans. Counts are summed over batches and DDP ranks.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from rnnlab.spans import bio_spans, bmes_spans


def spans(tags: Sequence[str], scheme: str) -> set[tuple]:
    if scheme == "bmes":
        return set(bmes_spans(tags))
    if scheme == "bio":
        return set(bio_spans(tags))
    raise ValueError(f"no spans in tagging scheme {scheme!r} (use 'bmes' or 'bio')")


def span_counts(gold: Sequence[str], pred: Sequence[str], scheme: str, oov: Sequence[int] | None = None) -> list[int]:
    """``[correct, predicted, gold, correct OOV, gold OOV]`` for one sentence (``oov``: per-unit 0/1 flags)."""
    g, p = spans(gold, scheme), spans(pred, scheme)
    hit = g & p
    if oov is None:
        return [len(hit), len(p), len(g), 0, 0]
    g_oov = {s for s in g if any(oov[s[0] : s[1]])}
    return [len(hit), len(p), len(g), len(hit & g_oov), len(g_oov)]


def scores(counts: Sequence[float]) -> dict[str, float]:
    correct, predicted, gold, oov_correct, oov_gold = (float(c) for c in counts)
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "oov_recall": oov_correct / oov_gold if oov_gold else 0.0,
    }


class SpanF1(Metric):
    """Span precision/recall/F1 and OOV recall over padded tag-id batches (``target == -100`` is padding).

    ``labels`` (tag names by id) and ``scheme`` (``bmes`` or ``bio``) may be given after construction with
    :meth:`configure`, e.g. once the DataModule has loaded its tag set.
    """

    full_state_update = False

    def __init__(self, labels: Sequence[str] = (), scheme: str = "bmes") -> None:
        super().__init__()
        self.configure(labels, scheme)
        self.add_state("counts", default=torch.zeros(5, dtype=torch.long), dist_reduce_fx="sum")

    def configure(self, labels: Sequence[str], scheme: str) -> None:
        self.labels, self.scheme = list(labels), scheme

    def update(self, preds: Tensor, target: Tensor, oov: Tensor | None = None) -> None:
        preds, target = preds.tolist(), target.tolist()
        oov = oov.tolist() if oov is not None else None
        total = [0] * 5
        for b, (p_row, g_row) in enumerate(zip(preds, target)):
            n = next((i for i, g in enumerate(g_row) if g < 0), len(g_row))
            gold = [self.labels[i] for i in g_row[:n]]
            pred = [self.labels[i] for i in p_row[:n]]
            counts = span_counts(gold, pred, self.scheme, oov[b][:n] if oov is not None else None)
            total = [a + c for a, c in zip(total, counts)]
        self.counts += torch.tensor(total, device=self.counts.device)

    def compute(self) -> dict[str, Tensor]:
        return {k: torch.tensor(v) for k, v in scores(self.counts.tolist()).items()}


@functools.lru_cache(maxsize=1 << 17)
def lowercase_tokenized(text: str, lang: str) -> str:
    """``text`` lowercased and split by the Moses tokeniser of ``lang`` (sacremoses, ``escape=False``; Chinese: by
    character, sacreBLEU's ``zh``), tokens joined by spaces. Cached: the references are the same every epoch."""
    return _splitter(lang)(text.lower()).lower()


@functools.lru_cache(maxsize=None)
def _splitter(lang: str):
    if lang == "zh":
        import sacrebleu

        return sacrebleu.BLEU(tokenize="zh").tokenizer
    from sacremoses import MosesTokenizer

    moses = MosesTokenizer(lang=lang or "en")
    return lambda text: moses.tokenize(text, escape=False, return_str=True)


def translation_scores(hyps: list[str], streams: list[list], lang: str) -> dict:
    """Corpus BLEU and chrF of detokenised ``hyps`` against reference ``streams`` (sacreBLEU; a stream entry may be
    None where a sentence has fewer references), with its signature, and ``bleu_lc_tok``: BLEU as the PyTorch seq2seq
    tutorials and multi-bleu.perl on Multi30k's ``*.lc.norm.tok`` files compute it -- hypotheses and references
    through :func:`lowercase_tokenized`, then scored without further tokenisation."""
    import sacrebleu

    bleu = sacrebleu.BLEU(tokenize="zh" if lang == "zh" else "13a")
    plain = sacrebleu.BLEU(tokenize="none", force=True)

    def lc_tok(text):
        return None if text is None else lowercase_tokenized(text, lang)

    return {
        "bleu": bleu.corpus_score(hyps, streams).score,
        "chrf": sacrebleu.CHRF().corpus_score(hyps, streams).score,
        "bleu_lc_tok": plain.corpus_score([lc_tok(h) for h in hyps], [[lc_tok(r) for r in s] for s in streams]).score,
        "signature": str(bleu.get_signature()),
        "lc_tok": f"lowercased, {'sacreBLEU zh' if lang == 'zh' else f'sacremoses MosesTokenizer({lang!r})'}, "
        f"then {plain.get_signature()}",
    }
