"""The counted n-gram expert (:class:`rnnlab.models.ngram.NgramLM`) against a by-hand reference, and inside the
classifier's hybrid."""

import math
from collections import Counter
from functools import partial

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.models import SequenceClassifier
from rnnlab.models.classifier import GenerativeExpert, NgramExpert
from rnnlab.models.ngram import NgramLM
from rnnlab.nn.recurrent import RecurrentSpec

B = 9  # the boundary symbol of an 8-token vocabulary


def reference(train: list[tuple[list[int], int]], order: int, discount: float, symbols: int):
    """Interpolated absolute discounting written out with dictionaries: ``p(cls, history, w)``."""
    followers: dict[tuple, Counter] = {}  # (class, history) -> counts of the next symbol
    for seq, cls in train:
        s = [B - 1] * (order - 1) + seq + [B - 1]
        for i in range(order - 1, len(s)):
            for h in range(order):
                followers.setdefault((cls, tuple(s[i - h : i])), Counter())[s[i]] += 1

    def p(cls, history, w):
        prob = 1.0 / symbols
        for h in range(order):
            hist = tuple(history[len(history) - h :]) if h else ()
            seen = followers.get((cls, hist), Counter())
            total = sum(seen.values())
            if total:
                prob = (max(seen[w] - discount, 0) + discount * len(seen) * prob) / total
        return prob

    return p


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ngram_scores_equal_the_by_hand_model_and_each_distribution_sums_to_one(order):
    g = torch.Generator().manual_seed(order)
    train = [
        (torch.randint(1, 6, (int(torch.randint(1, 6, (), generator=g)),), generator=g).tolist(), i % 2)
        for i in range(40)
    ]
    lm = NgramLM(vocab_size=8, num_classes=2, order=order, discount=0.7)
    lm.fit([torch.tensor(s) for s, _ in train], torch.tensor([c for _, c in train]))
    p = reference(train, order, 0.7, symbols=B)
    tests = [[1, 2, 3], [5], [4, 4, 4, 4, 1, 7], [7, 6]]  # 6 and 7 never seen in training
    tokens = torch.zeros(len(tests), 6, dtype=torch.long)
    for i, s in enumerate(tests):
        tokens[i, : len(s)] = torch.tensor(s)
    scores = lm.scores(tokens, torch.tensor([len(s) for s in tests]))
    for i, s in enumerate(tests):
        for cls in range(2):
            padded = [B - 1] * (order - 1) + s + [B - 1]
            by_hand = sum(math.log(p(cls, padded[j - order + 1 : j], padded[j])) for j in range(order - 1, len(padded)))
            assert scores[i, cls].item() == pytest.approx(by_hand, rel=1e-5)
    for history in ([], [1], [2, 3], [7, 7]):
        for cls in range(2):
            assert sum(p(cls, history[-(order - 1) :] if order > 1 else [], w) for w in range(B)) == pytest.approx(1)


def test_ngram_counts_round_trip_and_bad_settings_are_clear_errors():
    lm = NgramLM(vocab_size=8, num_classes=2, order=2).fit(
        [torch.tensor([1, 2]), torch.tensor([3])], torch.tensor([0, 1])
    )
    copy = NgramLM(vocab_size=8, num_classes=2, order=2)
    with pytest.raises(RnnlabError, match="no counts yet"):
        copy.scores(torch.tensor([[1, 2]]), torch.tensor([2]))
    copy.load_state_dict(lm.state_dict())
    x = torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])
    assert torch.equal(copy.scores(*x), lm.scores(*x))
    assert lm.scores(*x)[0].argmax() == 0 and lm.scores(*x)[1].argmax() == 1
    with pytest.raises(RnnlabError, match="order 2"):
        NgramLM(vocab_size=8, num_classes=2, order=3).load_state_dict(lm.state_dict())
    with pytest.raises(RnnlabError, match="order must be at least 1"):
        NgramLM(vocab_size=8, num_classes=2, order=-1)
    with pytest.raises(RnnlabError, match="too high"):
        NgramLM(vocab_size=50_000, num_classes=2, order=5)


def three_experts() -> SequenceClassifier:
    """The BiGRU, a GRU language model and a bigram model of the text given the class (tiny)."""
    return SequenceClassifier(
        vocab_size=10,
        num_classes=3,
        embedding_dim=4,
        experts=[
            partial(GenerativeExpert, hidden_size=8, embedding_dim=4, class_dim=2),
            partial(NgramExpert, order=2),
        ],
        rnn=RecurrentSpec(hidden_size=8),
    ).eval()


def test_classifier_takes_the_geometric_mean_of_three_experts_and_keeps_the_counts_in_its_checkpoint():
    torch.manual_seed(0)
    model = three_experts()
    generative, ngram = model.experts["generative"], model.experts["ngram"]
    for expert in (generative, ngram):
        expert.log_prior.copy_(torch.tensor([0.2, 0.3, 0.5]).log())
    ngram.lm.fit([torch.tensor([2, 3, 4]), torch.tensor([5, 6]), torch.tensor([7])], torch.tensor([0, 1, 2]))
    tokens, lengths = torch.tensor([[2, 3, 4], [7, 0, 0]]), torch.tensor([3, 1])
    with torch.no_grad():
        posteriors = [torch.log_softmax(model.discriminate(tokens, lengths), -1)]
        posteriors += [
            torch.log_softmax(m.log_likelihoods(tokens, lengths) + m.log_prior, -1) for m in (generative, ngram)
        ]
        assert torch.allclose(model(tokens, lengths), torch.log_softmax(sum(posteriors) / 3, -1), atol=1e-5)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    fresh = three_experts()
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])
    with torch.no_grad():
        assert torch.allclose(fresh(tokens, lengths), model(tokens, lengths))
    assert checkpoint["state_dict"]["experts.ngram.lm.event_counts"].sum() > 0  # the counts are checkpoint weights
    with pytest.raises(RnnlabError, match="no n-gram counts"):
        fresh.on_load_checkpoint(
            {"state_dict": {k: v for k, v in checkpoint["state_dict"].items() if "ngram" not in k}}
        )
    # checkpoints from before the experts were a list (generative./ngram./log_prior keys), and from before the
    # counts were buffers (kept under checkpoint["ngram"]), still load
    renamed = {}
    for k, v in checkpoint["state_dict"].items():
        k = k.replace("experts.generative.lm.", "generative.").replace("experts.ngram.lm.", "ngram.")
        renamed["log_prior" if k.endswith("log_prior") else k] = v
    tables = {k.removeprefix("ngram."): v for k, v in renamed.items() if k.startswith("ngram.") and "extra" not in k}
    legacy = {
        "state_dict": {k: v for k, v in renamed.items() if not k.startswith("ngram.")},
        "ngram": {"order": 2, "discount": 0.9, "tables": tables},
    }
    for old in ({"state_dict": dict(renamed)}, legacy):
        older = three_experts()
        older.on_load_checkpoint(old)
        older.load_state_dict(old["state_dict"])
        with torch.no_grad():
            assert torch.allclose(older(tokens, lengths), model(tokens, lengths))
    # the n-gram expert alone beside the BiGRU, without the GRU language model
    plain = SequenceClassifier(vocab_size=10, num_classes=3, experts=[partial(NgramExpert, order=2)])
    assert list(plain.experts) == ["ngram"] and "experts.ngram.log_prior" in plain.state_dict()


def test_the_experts_travel_in_the_checkpoint_as_plain_data_and_rebuild_the_model(tmp_path):
    import lightning as L

    model = three_experts()
    assert model.hparams.experts == [
        {
            "class_path": "rnnlab.models.classifier.GenerativeExpert",
            "init_args": {"hidden_size": 8, "embedding_dim": 4, "class_dim": 2},
        },
        {"class_path": "rnnlab.models.classifier.NgramExpert", "init_args": {"order": 2}},
    ]
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    again = SequenceClassifier.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert list(again.experts) == ["generative", "ngram"] and again.experts["ngram"].lm.order == 2
    assert again.hparams.rnn == model.hparams.rnn and again.hparams.rnn["hidden_size"] == 8
