"""Files epochal writes are verified and tidy: checksums refuse a flipped byte with the file's path, another
optimizer is refused before anything loads, the orphans of killed writers go at the next start, and a backup
folder is locked against a second process."""

import os
import pickle
import subprocess
import sys

import pytest
import torch

import epochal
from epochal.callbacks import BackupAndRestore, ModelCheckpoint
from epochal.files.digest import digest
from epochal.files.temporary import temporary_name
from epochal.saving import load_checkpoint, load_weights, save_checkpoint, save_weights

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def _flip(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_digest_reads_values_not_layout():
    assert digest({"a": torch.zeros(3), "b": [1, 2.5]}) == digest({"b": [1, 2.5], "a": torch.zeros(3)})
    assert digest({"a": torch.zeros(3)}) != digest({"a": torch.zeros(3, dtype=torch.float64)})
    assert digest([1]) != digest([True])


def test_a_flipped_byte_in_weights_or_a_checkpoint_is_refused_with_the_path(tmp_path):
    net = _net()
    save_weights(net, tmp_path / "w.safetensors")
    _flip(tmp_path / "w.safetensors", os.path.getsize(tmp_path / "w.safetensors") - 3)  # inside a tensor
    with pytest.raises(ValueError, match=r"w.safetensors' is corrupt: its contents do not match the checksum"):
        load_weights(_net(), tmp_path / "w.safetensors")
    save_checkpoint(tmp_path / "c.pt", net, None, {"epoch": 1})
    _flip(tmp_path / "c.pt", (tmp_path / "c.pt").read_bytes().index(net[0].weight.detach().numpy().tobytes()))
    with pytest.raises(ValueError, match=r"c.pt' is corrupt: its contents do not match the checksum"):
        load_checkpoint(tmp_path / "c.pt", _net())


@pytest.mark.parametrize("content", [b"", b"hello, world\n", pickle.dumps({"a": 1}), b"\xff" * 64])
def test_load_weights_on_a_file_that_is_not_weights_names_the_path(tmp_path, content):
    (tmp_path / "w.safetensors").write_bytes(content)
    with pytest.raises(ValueError, match=r"w.safetensors' is not a readable weights file .*expected a safetensors file"):
        load_weights(_net(), tmp_path / "w.safetensors")


def test_another_optimizer_is_refused_before_anything_loads(tmp_path):
    net = _net()
    adam = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    adam.step()
    save_checkpoint(tmp_path / "c.pt", net, adam)
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=r"c.pt'.*holds the state of a torch.optim.adam.Adam optimizer but the "
                                         r"optimizer given is a torch.optim.sgd.SGD"):
        load_checkpoint(tmp_path / "c.pt", target, torch.optim.SGD(target.parameters(), lr=0.1, momentum=0.9))
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items()), "nothing was loaded"


def _dead_pid():
    """The pid of a process that has exited (reused pids are vanishingly rare within a test)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_orphans_of_dead_writers_are_removed_at_the_next_start(tmp_path):
    name = os.path.basename(temporary_name(tmp_path / "ckpt.pt"))
    orphan = tmp_path / name.replace(f"-{os.getpid()}-", f"-{_dead_pid()}-")
    live = tmp_path / name  # this process's own: a write in progress
    orphan.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(torch.ones(4, 3), torch.zeros(4, 1), verbose=0, callbacks=[ModelCheckpoint(tmp_path / "ckpt.pt")])
    assert not orphan.exists() and live.exists() and (tmp_path / "ckpt.pt").exists()


_HOLDER = """
import sys, time
from epochal.files.lock import FolderLock
lock = FolderLock(sys.argv[1], "backup folder")
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_process_is_refused_at_once_and_a_dead_ones_lock_is_taken_over(tmp_path):
    folder = tmp_path / "backup"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        files = sorted(os.listdir(folder))
        model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        model.compile(optimizer="sgd", loss="mse")
        with pytest.raises(RuntimeError, match=rf"backup folder .* is in use by another process \(pid {holder.pid} on "):
            model.fit(torch.ones(4, 3), torch.zeros(4, 1), verbose=0, callbacks=[BackupAndRestore(folder)])
        assert sorted(os.listdir(folder)) == files, "the refused run touched nothing"
    finally:
        holder.kill()
        holder.wait()
    history = model.fit(torch.ones(4, 3), torch.zeros(4, 1), verbose=0, callbacks=[BackupAndRestore(folder)])
    assert history.epoch == [0]
    assert not folder.exists(), "a finished run removes its backups, lock and folder"
