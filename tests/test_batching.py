import random

import pytest
import torch

from rnnlab.data.batching import IGNORE_INDEX, LengthBucketSampler, SequenceDataset, pad_collate


def lengths(n, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 300) for _ in range(n)]


@pytest.mark.parametrize("n,bs", [(1000, 32), (97, 10), (5, 64)])
def test_each_index_exactly_once_per_epoch(n, bs):
    s = LengthBucketSampler(lengths(n), bs, shuffle=True, seed=1)
    for epoch in range(2):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert max(len(b) for b in batches) <= bs


def test_deterministic_per_seed_and_epoch_and_reshuffled_across_epochs():
    a = LengthBucketSampler(lengths(500), 16, seed=3)
    b = LengthBucketSampler(lengths(500), 16, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(LengthBucketSampler(lengths(500), 16, seed=4)) != list(b)


@pytest.mark.parametrize("n,bs,world", [(1000, 32, 2), (97, 10, 2), (33, 8, 3), (3, 1, 2), (7, 64, 2)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_get_disjoint_batches_covering_all_with_equal_counts(n, bs, world, shuffle):
    samplers = [
        LengthBucketSampler(lengths(n), bs, shuffle=shuffle, seed=0, num_replicas=world, rank=r) for r in range(world)
    ]
    for epoch in range(2):
        per_rank = []
        for s in samplers:
            s.set_epoch(epoch)
            per_rank.append([i for b in s for i in b])
            assert len(list(s)) == len(s)
        assert len({len(list(s)) for s in samplers}) == 1, "unequal batch counts hang DDP"
        flat = [i for r in per_rank for i in r]
        assert sorted(flat) == list(range(n)), "every sample exactly once across ranks"


def test_bucketing_keeps_padding_low():
    s = LengthBucketSampler(lengths(20000), 64, seed=0)
    assert s.padding_fraction() < 0.05
    unbucketed = LengthBucketSampler(lengths(20000), 64, seed=0, pool_batches=1)
    assert unbucketed.padding_fraction() > 0.3


def test_pad_collate_pads_tokens_and_sequence_targets():
    ds = SequenceDataset([torch.tensor([5, 6, 7]), torch.tensor([8])], [torch.tensor([1, 2, 3]), torch.tensor([4])])
    batch = pad_collate([ds[0], ds[1]], pad_id=0)
    assert batch.tokens.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.lengths.tolist() == [3, 1]
    assert batch.target.tolist() == [[1, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch.index.tolist() == [0, 1]
    labels = pad_collate([(torch.tensor([1]), 1, 4), (torch.tensor([2, 3]), 0, 9)])
    assert labels.target.tolist() == [1, 0] and labels.index.tolist() == [4, 9]


def test_layouts_name_the_fields_instead_of_channel_positions():
    rolls = [(torch.rand(3, 4), torch.rand(3, 4), 0), (torch.rand(2, 4), torch.rand(2, 4), 1)]
    batch = pad_collate(rolls, layout="features")
    assert batch.tokens is None and batch.features.dtype == torch.float and batch.features.shape == (2, 3, 4)
    assert len(batch) == 2 and batch.lengths.tolist() == [3, 2]
    tagged = [(torch.tensor([5, 6]), torch.tensor([[1, 0], [2, 1]]), 0), (torch.tensor([7]), torch.tensor([[3, 1]]), 1)]
    batch = pad_collate(tagged, layout="tagged")
    assert batch.target.tolist() == [[1, 2], [3, IGNORE_INDEX]] and batch.flags.tolist() == [[0, 1], [1, IGNORE_INDEX]]
    unlabelled = pad_collate([(torch.tensor([5, 6]), None, 0)], layout="tagged")  # predict: no target, no flags
    assert unlabelled.target is None and unlabelled.flags is None
    with pytest.raises(ValueError, match="layout"):
        pad_collate(tagged, layout="channels")
