"""The bag-of-tokens expert (:class:`rnnlab.models.classifier.TokenBag`): the same model and solution as
scikit-learn's logistic regression, fitted in the classifier's setup, and its place in the geometric mean."""

from functools import partial

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

from conftest import language_classifier
from rnnlab.errors import RnnlabError
from rnnlab.models import SequenceClassifier
from rnnlab.models.classifier import BagExpert, NgramExpert, TokenBag
from rnnlab.nn.recurrent import RecurrentSpec

# token ids of a 12-token vocabulary (0 = padding); classes 0/1/2
TEXTS = [[2, 3], [3, 2], [2, 4], [5, 6, 7], [5, 7], [8, 9], [9, 8, 9], [2, 3], [6, 5], [10, 11], [11], [4, 3, 2]]
LABELS = [0, 1, 0, 1, 1, 2, 2, 1, 1, 2, 2, 0]


def padded(texts):
    tokens = torch.zeros(len(texts), max(map(len, texts)), dtype=torch.long)
    for i, t in enumerate(texts):
        tokens[i, : len(t)] = torch.tensor(t)
    return tokens, torch.tensor([len(t) for t in texts])


def test_bag_logits_are_the_sum_of_the_token_rows_and_the_whole_text_row():
    torch.manual_seed(0)
    bag = TokenBag(vocab_size=12, num_classes=3, buckets=97)
    torch.nn.init.normal_(bag.weight.weight)
    torch.nn.init.normal_(bag.bias)
    tokens, lengths = padded([[2, 3], [3, 2], [5, 6, 7]])
    logits = bag(tokens, lengths)
    w = bag.weight.weight
    for i, text in enumerate([[2, 3], [3, 2], [5, 6, 7]]):
        whole = sum(t * pow(TokenBag.PRIME, k, 97) for k, t in enumerate(text)) % 97
        assert torch.allclose(logits[i], w[text].sum(0) + w[12 + whole] + bag.bias, atol=1e-6)
    assert not torch.allclose(logits[0], logits[1]), "the same tokens in another order are another whole text"
    alone = bag(*padded([[2, 3]]))  # padding to the batch's longest text changes nothing
    assert torch.allclose(alone[0], logits[0], atol=1e-6)
    with pytest.raises(RnnlabError, match="buckets must be at least 1"):
        TokenBag(12, 3, buckets=0)


@pytest.mark.parametrize("l2", [1.0, 4.0])
def test_bag_fit_is_scikit_learns_logistic_regression_and_then_frozen(l2):
    """``fit`` minimises mean cross-entropy + l2 ||w||^2 / 2N and lands on the solution of
    ``LogisticRegression(C=1/l2)`` over the same features: each token's count and a one-hot of the whole text."""
    tokens, lengths = padded(TEXTS)
    bag = TokenBag(vocab_size=12, num_classes=3, buckets=1009)
    bag.fit(tokens, lengths, torch.tensor(LABELS), l2)
    assert not any(p.requires_grad for p in bag.parameters()), "fitted once, then left alone by the optimiser"
    # the same features by hand: token counts, then one column per distinct whole text
    wholes = sorted({tuple(t) for t in TEXTS})
    x = np.zeros((len(TEXTS), 12 + len(wholes)))
    for i, t in enumerate(TEXTS):
        for tok in t:
            x[i, tok] += 1
        x[i, 12 + wholes.index(tuple(t))] = 1
    clf = LogisticRegression(C=1 / l2, tol=1e-10, max_iter=10000).fit(csr_matrix(x), LABELS)
    with torch.no_grad():
        ours = torch.softmax(bag(tokens, lengths), -1).numpy()
    np.testing.assert_allclose(ours, clf.predict_proba(x), atol=2e-4)


def test_classifier_fits_the_bag_in_setup_and_takes_the_geometric_mean(env):
    model, dm = language_classifier(
        embedding_dim=4,
        experts=[partial(BagExpert, buckets=101, l2=2.0), partial(NgramExpert, order=1)],
        rnn=RecurrentSpec(hidden_size=8),
    )
    bag, ngram = model.experts["bag"].bag, model.experts["ngram"]
    train = dm.datasets["train"]
    reference = TokenBag(dm.vocab_size, dm.num_classes, buckets=101)
    tokens = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(s) for s in train.sequences], batch_first=True)
    reference.fit(tokens, torch.tensor([len(s) for s in train.sequences]), torch.as_tensor(train.targets), 2.0)
    assert torch.allclose(bag.weight.weight, reference.weight.weight, atol=1e-5)  # fitted on the training split
    assert bag.weight.weight.abs().sum() > 0 and not bag.weight.weight.requires_grad
    model.eval()
    batch = next(iter(dm.val_dataloader()))
    tokens, lengths = batch.tokens, batch.lengths
    with torch.no_grad():
        posteriors = [
            torch.log_softmax(model.discriminate(tokens, lengths), -1),
            torch.log_softmax(bag(tokens, lengths), -1),
            torch.log_softmax(ngram.lm.scores(tokens, lengths) + ngram.log_prior, -1),
        ]
        assert torch.allclose(model(tokens, lengths), torch.log_softmax(sum(posteriors) / 3, -1), atol=1e-5)
    # training: only the network learns (its cross-entropy is the whole loss); the bag gets no gradient
    model.train()
    model.log = model.log_dict = lambda *a, **k: None
    model.dropout.p = model.embedding_dropout.p = 0.0
    loss, _ = model._step(batch, model.train_metrics, "train")
    expected = torch.nn.functional.cross_entropy(model.discriminate(tokens, lengths), batch.target)
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert bag.weight.weight.grad is None and model.head.weight.grad is not None
    plain = SequenceClassifier(vocab_size=12, num_classes=3)
    assert not plain.experts and not any(k.startswith(("bag", "experts")) for k in plain.state_dict())


def test_nbsvm_features_are_binarised_hashed_bigrams_scaled_by_the_log_count_ratio():
    bag = TokenBag(vocab_size=6, num_classes=2, buckets=11, ngrams=2, whole=False, nb=True)
    tokens = torch.tensor([[2, 2, 3, 0], [4, 5, 4, 5]])
    ids, weights = bag.features(tokens, torch.tensor([3, 4]))
    bigram = lambda a, b: 6 + (a * TokenBag.PRIME + b) % 11  # noqa: E731
    first = sorted(int(i) for i, w in zip(ids[0], weights[0]) if w)
    assert first == sorted({2, 3, bigram(2, 2), bigram(2, 3)}), "each feature once, padding never"
    second = sorted(int(i) for i, w in zip(ids[1], weights[1]) if w)
    assert second == sorted({4, 5, bigram(4, 5), bigram(5, 4)})
    targets = torch.tensor([1, 0])
    bag.fit(tokens, torch.tensor([3, 4]), targets, l2=1.0)
    present_1 = torch.zeros(17).index_fill_(0, torch.tensor(first), 1.0)
    present_0 = torch.zeros(17).index_fill_(0, torch.tensor(second), 1.0)
    p, q = 1 + present_1, 1 + present_0
    assert torch.allclose(bag.ratio, ((p / p.sum()) / (q / q.sum())).log())
    assert bag(tokens, torch.tensor([3, 4])).argmax(-1).tolist() == [1, 0]
    with pytest.raises(RnnlabError, match="two classes"):
        TokenBag(6, 3, 11, nb=True)
