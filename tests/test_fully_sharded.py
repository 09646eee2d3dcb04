"""FSDP's pieces that need no process group (fast, one process): the options, which submodules become units,
evaluation in lockstep, and folders of shards written and read with torch.distributed.checkpoint."""

from __future__ import annotations

import os

import pytest
import torch

import epochal
from epochal.callbacks import BackupAndRestore
from epochal.data.arrays import ArrayAdapter
from epochal.parallel import FSDP, sharded_state
from epochal.parallel.fully_sharded import units
from epochal.parallel.sharding import Lockstep
from epochal.parallel.sync import LOCAL

# -- choosing and checking ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["fsdp2", 2, object()])
def test_an_unknown_distributed_value_is_named(value):
    with pytest.raises(ValueError, match=r"`distributed` must be None, True, False, \"ddp\", \"fsdp\".*Received"):
        epochal.Model(torch.nn.Linear(2, 1), device="cpu", distributed=value)


def test_fsdp_outside_a_distributed_job_says_how_to_launch_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=r"distributed='fsdp'.*torchrun --nproc_per_node=N script.py` \(N=1 is fine"):
        epochal.Model(torch.nn.Linear(2, 1), device="cpu", distributed="fsdp")


@pytest.mark.parametrize(("options", "message"), [
    ({"shard": "blocks"}, r"`shard` must be a tuple of torch.nn.Module classes or a callable.*Received: shard='blocks'"),
    ({"shard": (int,)}, r"`shard` must be a tuple of torch.nn.Module classes"),
    ({"reshard_after_forward": 1}, r"`reshard_after_forward` must be a bool. Received: reshard_after_forward=1"),
    ({"mixed_precision": "bf16"}, r"`mixed_precision` must be a torch.distributed.fsdp.MixedPrecisionPolicy"),
])
def test_bad_fsdp_options_are_named(options, message):
    with pytest.raises(TypeError, match=message):
        FSDP(**options)


class Blocks(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(4, 8)
        self.blocks = torch.nn.ModuleList(torch.nn.TransformerEncoderLayer(8, 2, 16) for _ in range(3))
        self.act = torch.nn.ReLU()
        self.head = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))


def test_by_default_every_child_with_parameters_is_a_unit_looking_inside_containers():
    module = Blocks()
    assert units(module, None) == [module.embed, *module.blocks, module.head[0], module.head[1]]


def test_units_can_be_chosen_by_class_or_by_a_callable_innermost_first():
    module = Blocks()
    assert units(module, (torch.nn.TransformerEncoderLayer,)) == list(reversed(module.blocks))
    chosen = units(module, lambda m: m is module.head or m is module.head[0])
    assert chosen == [module.head[0], module.head]  # a unit inside a unit is sharded first


# -- evaluation in lockstep -----------------------------------------------------------------------


class TwoRanks:
    """`any` as the group would answer: true while the busier rank still has batches."""

    def __init__(self, other_batches: int) -> None:
        self.other_batches, self.calls = other_batches, 0

    def any(self, flag: bool) -> bool:
        self.calls += 1
        return flag or self.calls <= self.other_batches


def test_a_rank_out_of_batches_keeps_in_step_with_placeholders_that_count_for_nothing():
    x = torch.arange(5.0).unsqueeze(1)
    adapter = ArrayAdapter(x, x, None, num_samples=5, batch_size=2, shuffle=False)  # 3 batches: 2, 2, 1
    batches = list(Lockstep(adapter, TwoRanks(other_batches=5)).epoch_batches(0))
    assert [b.weight for b in batches] == [2, 2, 1, 0, 0]
    assert torch.equal(batches[3].x, batches[2].x)  # the last real batch, repeated
    assert Lockstep(adapter, TwoRanks(other_batches=1)).steps == 3  # the adapter's own answers pass through


def test_predict_drops_the_placeholders_outputs():
    model = epochal.Model(torch.nn.Linear(1, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    x = torch.arange(5.0).unsqueeze(1)
    adapter = Lockstep(ArrayAdapter(x, None, None, num_samples=5, batch_size=2, shuffle=False), TwoRanks(4))
    from epochal.callbacks.callback_list import CallbackList
    from epochal.training.loop import predict_batches

    outputs = list(predict_batches(model.module, model._pipeline.predict, iter(adapter.epoch_batches(0)),
                                   CallbackList([]), modes_per_batch=False))
    assert len(outputs) == 3  # the two placeholders' outputs are not among them
    torch.testing.assert_close(torch.cat(outputs), model.module(x).detach())


# -- folders of shards ----------------------------------------------------------------------------


def trained(seed: int) -> tuple[torch.nn.Module, dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1)
    module(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    return module, {"optimizer": optimizer}


def test_shards_round_trip_weights_optimizer_state_and_values(tmp_path):
    module, optimizers = trained(0)
    sharded_state.save_shards(tmp_path / "shards", module, optimizers, {"metadata": {"epoch": 3}}, LOCAL)
    assert sharded_state.is_shards(tmp_path / "shards")
    other, other_optimizers = trained(1)
    values = sharded_state.load_shards(tmp_path / "shards", other, other_optimizers)
    assert values["metadata"] == {"epoch": 3}
    for name, tensor in module.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor)
    saved, loaded = optimizers["optimizer"].state_dict(), other_optimizers["optimizer"].state_dict()
    for index, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(loaded["state"][index][key], value)


def test_a_failed_write_leaves_the_previous_shards_whole(tmp_path, monkeypatch):
    module, optimizers = trained(0)
    path = tmp_path / "shards"
    sharded_state.save_shards(path, module, optimizers, {"round": 1}, LOCAL)
    before = sorted(os.listdir(path))
    changed, changed_optimizers = trained(1)

    def killed(new: str, target: str) -> None:
        raise OSError("killed before the rename")

    monkeypatch.setattr(sharded_state, "_replace_folder", killed)
    with pytest.raises(OSError, match="killed"):
        sharded_state.save_shards(path, changed, changed_optimizers, {"round": 2}, LOCAL)
    assert sorted(os.listdir(path)) == before and sharded_state.read_values(path)["round"] == 1
    monkeypatch.undo()
    sharded_state.save_shards(path, changed, changed_optimizers, {"round": 3}, LOCAL)  # replaces it, leftovers cleared
    assert sharded_state.read_values(path)["round"] == 3
    assert sorted(os.listdir(tmp_path)) == ["shards"]


def test_shards_of_another_architecture_are_refused_before_anything_loads(tmp_path):
    module, optimizers = trained(0)
    sharded_state.save_shards(tmp_path / "shards", module, optimizers, {}, LOCAL)
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    before = {name: t.clone() for name, t in other.state_dict().items()}
    with pytest.raises(ValueError, match=r"`2.weight` has shape \(1, 4\) in the shards but \(2, 4\) in the module"):
        sharded_state.load_shards(tmp_path / "shards", other, None)
    renamed = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"the names differ.*unexpected in the shards: `2.bias`, `2.weight`"):
        sharded_state.load_shards(tmp_path / "shards", renamed, None)
    assert all(torch.equal(other.state_dict()[name], t) for name, t in before.items())


@pytest.mark.parametrize("damage, message", [
    ("flip", r"'{file}' is corrupt: its contents do not match the checksum"),
    ("remove", r"'{file}' is missing; the shards in '{folder}' are incomplete"),
    ("marker", r"'{folder}/epochal.json' is corrupt: its contents do not match the checksum"),
])
def test_damaged_or_missing_shards_are_refused_with_the_path_before_anything_loads(tmp_path, damage, message):
    module, optimizers = trained(0)
    folder = tmp_path / "shards"
    sharded_state.save_shards(folder, module, optimizers, {"metadata": {"epoch": 3}}, LOCAL)
    file = folder / sorted(name for name in os.listdir(folder) if name.endswith(".distcp"))[0]
    if damage == "flip":
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 1
        file.write_bytes(bytes(data))
    elif damage == "remove":
        file.unlink()
    else:
        marker = folder / "epochal.json"
        marker.write_text(marker.read_text().replace('"epoch": 3', '"epoch": 4'))
    other, other_optimizers = trained(1)
    before = {name: tensor.clone() for name, tensor in other.state_dict().items()}
    with pytest.raises(ValueError, match=message.format(file=file, folder=folder)):
        sharded_state.load_shards(folder, other, other_optimizers)
    assert all(torch.equal(other.state_dict()[name], tensor) for name, tensor in before.items())


def test_a_folder_that_is_not_shards_is_named(tmp_path):
    (tmp_path / "epochal.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="is not a folder of epochal shards"):
        sharded_state.read_values(tmp_path)


def test_backups_remove_uncommitted_and_half_written_shards(tmp_path):
    """Shards whose manifest never landed, and a killed writer's partial folder, go; committed backups stay."""
    backup = BackupAndRestore(tmp_path)
    module, optimizers = trained(0)
    for sequence in (1, 2, 3):
        backup.write_shards(sequence, module, optimizers, LOCAL)
        if sequence < 3:
            backup.write({"format": "epochal.backup"}, {"epoch": sequence}, sequence)
    os.makedirs(tmp_path / "backup-00000004.shards.partial")
    with backup.hold():
        assert "backup-00000004.shards.partial" not in os.listdir(tmp_path)
        backup.write({"format": "epochal.backup"}, {"epoch": 4}, backup.next_sequence())
    names = sorted(os.listdir(tmp_path))
    assert "backup-00000003.shards" not in names and "backup-00000001.shards" not in names
    assert "backup-00000002.shards" in names and "backup-00000002.json" in names
