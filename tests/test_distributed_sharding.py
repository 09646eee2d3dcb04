"""How one process's share of the data is cut, checked without a process group (fast)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from epochal.data.arrays import ArrayAdapter
from epochal.parallel.cluster import Cluster
from epochal.parallel.sharding import ShardedArrays, block, block_of


def fake_cluster(rank: int, world: int) -> Cluster:
    """A Cluster as rank `rank` of `world` would see it; broadcasting keeps what every rank drew."""
    return SimpleNamespace(rank=rank, world_size=world, device=torch.device("cpu"),  # type: ignore[return-value]
                           broadcast=lambda tensor: tensor,
                           check_batch_size=lambda size, name="batch_size": Cluster.check_batch_size(
                               SimpleNamespace(world_size=world), size, name))


def arrays(samples: int, batch_size: int, shuffle: bool) -> ArrayAdapter:
    x = torch.arange(samples).float().unsqueeze(1)
    return ArrayAdapter(x, x.clone(), None, num_samples=samples, batch_size=batch_size, shuffle=shuffle)


@pytest.mark.parametrize("samples", [16, 13, 9])  # a last batch of 4, 1 (a placeholder on rank 1) and 1
def test_the_ranks_slices_make_up_each_global_batch(samples):
    world = 2
    torch.manual_seed(0)
    expected = [batch.x.flatten().tolist() for batch in arrays(samples, 4, True).epoch_batches(0)]
    shards = []
    for rank in range(world):
        torch.manual_seed(0)
        shards.append(list(ShardedArrays(arrays(samples, 4, True), fake_cluster(rank, world)).epoch_batches(0)))
    assert [len(s) for s in shards] == [len(expected)] * world  # every rank runs the same number of steps
    for index, whole in enumerate(expected):
        parts = [shards[rank][index] for rank in range(world)]
        real = [p for p in parts if p.loss_scale > 0]
        assert [v for p in real for v in p.x.flatten().tolist()] == whole
        # DDP averages W ranks' gradients of scale_k * (mean over n_k): each sample weighs scale_k / (W n_k),
        # which must be 1 / r, as in the global batch's mean loss.
        for part in real:
            assert part.loss_scale / (world * part.size) == pytest.approx(1 / len(whole))
        assert all(p.weight == 0 for p in parts if p.loss_scale == 0)


def test_evaluation_blocks_are_contiguous_and_in_rank_order():
    blocks = [block_of(arrays(11, 4, False), fake_cluster(rank, 2)) for rank in (0, 1)]
    rows = [b.x.flatten().tolist() for block in blocks for b in block.epoch_batches(0)]
    assert [v for row in rows for v in row] == list(range(11))
    assert [block.batch_size for block in blocks] == [2, 2]


def test_block_sizes_differ_by_at_most_one_larger_first():
    assert [block(5, 2, r) for r in (0, 1)] == [(0, 3), (3, 5)]
    assert [block(1, 3, r) for r in (0, 1, 2)] == [(0, 1), (1, 1), (1, 1)]


def test_a_global_batch_size_the_ranks_cannot_share_is_an_error():
    with pytest.raises(ValueError, match=r"`batch_size` is the global batch.*divisible by 2. Received: batch_size=7"):
        Cluster.check_batch_size(SimpleNamespace(world_size=2), 7)  # type: ignore[arg-type]
