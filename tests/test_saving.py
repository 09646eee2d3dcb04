"""Weights and checkpoints round-trip exactly, refuse other architectures, and never leave a torn file."""

import os

import pytest
import torch

from epochal.saving import atomic_write, load_checkpoint, load_weights, save_checkpoint, save_weights


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


class _Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.out = torch.nn.Linear(3, 5, bias=False)
        self.out.weight = self.embed.weight


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_weights_round_trip_includes_buffers(tmp_path):
    source = _net()
    source.train()(torch.randn(8, 3))  # moves the BatchNorm running statistics off their defaults
    save_weights(source, tmp_path / "w.safetensors")
    target = _net()
    load_weights(target, tmp_path / "w.safetensors")
    assert _same(source, target)
    assert torch.equal(target[1].running_mean, source[1].running_mean)


def test_tied_weights_are_saved_once_and_stay_tied(tmp_path):
    source = _Tied()
    save_weights(source, tmp_path / "tied.safetensors")
    target = _Tied()
    load_weights(target, tmp_path / "tied.safetensors")
    assert _same(source, target)
    assert target.out.weight is target.embed.weight


def test_other_architecture_names_the_parameter_and_both_shapes(tmp_path):
    save_weights(torch.nn.Linear(3, 4), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"`weight` has shape \(4, 3\) in the file but \(5, 3\) in the module"):
        load_weights(torch.nn.Linear(3, 5), tmp_path / "w.safetensors")


def test_missing_and_unexpected_names_are_listed(tmp_path):
    save_weights(torch.nn.Linear(3, 4), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"missing from the file: none; unexpected in the file: `bias`"):
        load_weights(torch.nn.Linear(3, 4, bias=False), tmp_path / "w.safetensors")


def test_checkpoint_resumes_training_exactly(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 2)

    def train(net, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()

    straight = _net()
    resumed = _net()
    resumed.load_state_dict(straight.state_dict())
    straight_opt = torch.optim.Adam(straight.parameters(), lr=0.01)
    train(straight, straight_opt, 3)
    save_checkpoint(tmp_path / "c.pt", straight, straight_opt, {"epoch": 2, "logs": {"loss": 0.5}})
    train(straight, straight_opt, 3)

    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=0.01)
    metadata = load_checkpoint(tmp_path / "c.pt", resumed, resumed_opt)
    train(resumed, resumed_opt, 3)
    assert metadata == {"epoch": 2, "logs": {"loss": 0.5}}
    assert _same(straight, resumed)


def test_load_weights_reads_the_module_part_of_a_checkpoint(tmp_path):
    source = _net()
    save_checkpoint(tmp_path / "c.pt", source, None)
    target = _net()
    load_weights(target, tmp_path / "c.pt")
    assert _same(source, target)


def test_checkpoint_refuses_metadata_that_would_need_pickle(tmp_path):
    with pytest.raises(TypeError, match=r"`metadata\['when'\]` must hold only tensors"):
        save_checkpoint(tmp_path / "c.pt", _net(), None, {"when": object()})
    assert not os.listdir(tmp_path)


def test_checkpoint_without_optimizer_state_says_so(tmp_path):
    net = _net()
    save_checkpoint(tmp_path / "c.pt", net, None)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "c.pt", net, torch.optim.SGD(net.parameters(), lr=0.1))


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "notes.csv"
    target.write_text("old")
    with atomic_write(target, text=True) as handle:
        handle.write("a,b\r\n")
    assert target.read_bytes() == b"a,b\r\n"
    assert os.listdir(tmp_path) == ["notes.csv"]
