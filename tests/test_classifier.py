import pytest
import torch

from rnnlab.models import SequenceClassifier
from rnnlab.nn.recurrent import RecurrentSpec


@pytest.mark.parametrize("pooling", ["last", "max", "mean", "attention"])
@pytest.mark.parametrize(
    "cell,impl,packed",
    [("lstm", "torch", False), ("gru", "torch", True), ("rnn", "torch", False), ("lstm", "handwritten", False)],
)
def test_a_sequence_alone_and_inside_a_padded_batch_gives_the_same_logits(pooling, cell, impl, packed):
    torch.manual_seed(0)
    model = SequenceClassifier(
        vocab_size=50,
        num_classes=3,
        embedding_dim=8,
        pooling=pooling,
        rnn=RecurrentSpec(hidden_size=8, num_layers=2, cell=cell, impl=impl, packed=packed),
    ).eval()
    seqs = [torch.randint(2, 50, (n,)) for n in (7, 2, 11, 1)]
    tokens = torch.zeros(4, 11, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = s
    batched = model(tokens, torch.tensor([len(s) for s in seqs]))
    for i, s in enumerate(seqs):
        alone = model(s.unsqueeze(0), torch.tensor([len(s)]))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=0)


def test_bad_pooling_is_refused_with_the_choices():
    from rnnlab.errors import RnnlabError

    with pytest.raises(RnnlabError, match="last.*max.*mean.*attention"):
        SequenceClassifier(vocab_size=10, num_classes=2, pooling="min")
