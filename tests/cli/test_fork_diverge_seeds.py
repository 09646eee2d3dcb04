"""`epochal fork`, `diverge` and `train --seeds` with `compare`: a run continued from a backup with settings changed
(or none), where two runs part, and which configuration is better beyond seed noise."""

import re
import statistics

import pytest
import tomllib

from epochal.callbacks.history import History
from epochal.cli.report import figures
from epochal.cli.run_folder import load_run

COMMON = ["--data", "iris", "--verbose", "0", "--patience", "50"]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A 5-epoch iris run, its backups kept (one per epoch), made once for these tests."""
    from click.testing import CliRunner

    from epochal.cli.main import main

    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(main, ["train", *COMMON, "--epochs", "5", "--out", str(out), "--name", "p"])
    assert result.exit_code == 0, result.output
    return out / "p"


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_fork_with_nothing_changed_repeats_its_parent_and_one_with_a_new_rate_continues_it(parent, epochal_cli,
                                                                                               is_png):
    before = _files(parent)
    code, out = epochal_cli("fork", parent, "--at", "2", "--verbose", "0")
    assert code == 0, out
    assert out.startswith(f"Forking {parent} after epoch 2 with no setting changed\n")
    same = parent.parent / "p-fork-2"
    assert (same / "history.csv").read_text() == (parent / "history.csv").read_text()
    code, out = epochal_cli("fork", parent, "--at", "2", "--set", "learning_rate=0.01", "--set", "epochs=6",
                            "--name", "faster", "--verbose", "0")
    assert code == 0, out
    faster = parent.parent / "faster"
    config = tomllib.loads((faster / "config.toml").read_text())
    assert config["lr"] == 0.01 and config["fork_of"].endswith("p/backup/backup-00000002.pt")
    history, original = History.load(faster / "history.json"), History.load(parent / "history.json")
    assert history.epoch == list(range(6))
    assert {k: v[:2] for k, v in history.history.items()} == {k: v[:2] for k, v in original.history.items()}
    [event] = history.events
    assert (event["kind"], event["epoch"], event["changes"]) == ("fork", 2, {"epochs": [5, 6], "lr": [0.001, 0.01]})
    assert "forked from" in (faster / "report.html").read_text()
    assert _files(parent) == before, "the parent is only read"
    code, out = epochal_cli("compare", parent, faster)
    assert code == 0 and "fork of" in out.splitlines()[0] and "p@2" in out.splitlines()[2]
    assert is_png(parent.parent / "compare.png")


def test_a_fork_may_validate_by_steps_and_stop_after_max_steps(parent, epochal_cli):
    """iris trains in 3 batches per epoch: forked after epoch 2 (step 6), it validates at steps 8, 9 (epoch 3's
    end), 10 and 11, where max_steps closes epoch 4; the parent's validations at steps 3 and 6 stay."""
    code, out = epochal_cli("fork", parent, "--at", "2", "--set", "validation_every=2", "--set", "max_steps=11",
                            "--name", "by-steps", "--verbose", "0")
    assert code == 0, out
    history = History.load(parent.parent / "by-steps" / "history.json")
    assert history.epoch == [0, 1, 2, 3] and history.validation_steps == [3, 6, 8, 9, 10, 11]
    assert history.events[0]["changes"] == {"max_steps": [None, 11], "validation_every": [None, 2]}


def test_a_fork_inside_an_epoch_repeats_its_parent_and_is_named_without_a_colon(tmp_path, epochal_cli):
    code, out = epochal_cli("train", *COMMON, "--epochs", "3", "--backup-freq", "2", "--out", tmp_path, "--name", "p")
    assert code == 0, out
    code, out = epochal_cli("fork", tmp_path / "p", "--at", "2:2", "--verbose", "0")
    assert code == 0 and out.startswith(f"Forking {tmp_path / 'p'} after batch 2 of epoch 2 with no setting changed")
    fork = tmp_path / "p-fork-2-2"
    assert (fork / "history.csv").read_text() == (tmp_path / "p" / "history.csv").read_text()
    [event] = History.load(fork / "history.json").events
    assert (event["kind"], event["epoch"], event["batch"], event["changes"]) == ("fork", 1, 2, {})


@pytest.mark.parametrize("args, message", [
    (["--at", "9"], "Cannot fork after epoch 9: the run's last backup is after epoch 5, so that point is past its end."),
    (["--at", "2:3"], "No backup in '{backups}' after batch 3 of epoch 2; there are backups after epoch 1, after epoch 2"),
    (["--at", "2", "--set", "hidden=8"], "--set hidden cannot change in a fork: it is the model's architecture."),
    (["--at", "2", "--set", "seed=4"], "--set seed cannot change in a fork: it decides the data"),
    (["--at", "2", "--set", "lr"], "--set takes KEY=VALUE (e.g. learning_rate=1e-4). Received: 'lr'"),
    (["--at", "two"], "--at takes EPOCH or EPOCH:BATCH, counted from 1 (e.g. 10 or 10:5). Received: 'two'"),
])
def test_a_fork_that_cannot_be_is_one_line_and_leaves_no_folder(parent, epochal_cli, args, message):
    runs = set(parent.parent.iterdir())
    code, out = epochal_cli("fork", parent, *args, "--name", "bad")
    assert code == 1 and out.splitlines()[-1].startswith("Error: " + message.format(backups=parent / "backup"))
    assert set(parent.parent.iterdir()) == runs


def test_a_run_that_kept_no_backup_cannot_be_forked_and_says_how_to_keep_them(tmp_path, epochal_cli):
    code, out = epochal_cli("train", *COMMON, "--epochs", "2", "--keep-backups", "0", "--out", tmp_path, "--name", "p")
    assert code == 0, out
    before = set(tmp_path.iterdir())
    code, out = epochal_cli("fork", tmp_path / "p", "--at", "1")
    assert code == 1 and out.splitlines()[-1] == (
        f"Error: {str(tmp_path / 'p' / 'backup')!r} holds no backup to fork from: train the parent with "
        "`BackupAndRestore(..., keep=None, delete_checkpoint=False)`, or with `epochal train --keep-backups all` "
        "(the default).")
    assert set(tmp_path.iterdir()) == before


def test_a_damaged_backup_is_refused_and_left_as_it_is(parent, epochal_cli, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(parent, copy)
    damaged = copy / "backup" / "backup-00000003.pt"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 1
    damaged.write_bytes(bytes(data))
    code, out = epochal_cli("fork", copy, "--at", "3", "--name", "bad")
    assert code == 1 and "backup-00000003.pt cannot be used: its checksum does not match its manifest" in out
    assert damaged.read_bytes() == bytes(data) and not (tmp_path / "bad").exists()


def test_diverge_replays_from_the_last_common_backup_and_names_where_runs_part(parent, epochal_cli):
    code, out = epochal_cli("fork", parent, "--at", "3", "--set", "lr=0.02", "--name", "steeper")
    assert code == 0, out
    code, out = epochal_cli("diverge", parent, parent.parent / "steeper", "--forward")
    assert code == 0, out
    assert out.startswith("The backups of both runs are the same after epoch 3: replaying from there.\n"
                          "Their backups differ after epoch 4")
    assert "The runs part at batch 0 of epoch 4 (after 0 identical batches)" in out
    assert "The batch's inputs are the same." in out and "the difference is in the backward pass or the update" in out
    code, out = epochal_cli("fork", parent, "--at", "1", "--name", "again")
    code, out = epochal_cli("diverge", parent, parent.parent / "again")
    assert out.strip() == "The backups of both runs are the same after epoch 5, where both ended: they do not part " \
                          "while both train."


def test_diverge_says_backups_that_differ_where_a_replay_does_not_come_from_where_the_runs_ran(parent, epochal_cli,
                                                                                             tmp_path):
    """Another machine's copy of the run: the same settings, its backups after epoch 3 one float step apart."""
    import shutil

    import torch

    from epochal.callbacks import BackupAndRestore

    other = tmp_path / "other"
    shutil.copytree(parent, other)
    backups = BackupAndRestore(other / "backup", keep=None)
    for manifest in backups.backups():
        if manifest["epoch"] > 3:
            snapshot = backups.read_backup(manifest["sequence"])
            weight = snapshot["module"]["0.weight"]
            weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(float("inf")))
            position = {k: v for k, v in manifest.items() if k not in ("format", "version", "sequence", "file",
                                                                          "size", "sha256")}
            backups.write(snapshot, position, manifest["sequence"])
    code, out = epochal_cli("diverge", parent, other)
    assert code == 0, out
    assert out.startswith("The backups of both runs are the same after epoch 3: replaying from there.\n"
                          "Their backups differ after epoch 4 (largest: 0.weight: largest difference ")
    assert "The runs do not part: identical weights after each of the" in out
    assert out.rstrip().endswith("the difference does not come from their settings but from where or how they ran "
                                 "(another machine or torch build, nondeterministic kernels, an interruption).")


def test_seeds_give_means_intervals_and_a_verdict_beyond_seed_noise(tmp_path, epochal_cli):
    pytest.importorskip("scipy")
    for name, lr in (("slow", "0.0003"), ("fast", "0.01")):
        code, out = epochal_cli("train", *COMMON, "--epochs", "4", "--seeds", "3", "--lr", lr, "--name", name,
                                "--out", tmp_path)
        assert code == 0, out
        assert "Over 3 seeds: mean ± half-width of the 95% confidence interval" in out
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["seed-0", "seed-1", "seed-2"]
    code, out = epochal_cli("compare", tmp_path / "slow", tmp_path / "fast", "--html")
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:7]] == [f"{g}/seed-{s}" for g in ("slow", "fast") for s in range(3)]
    seeds = lines[lines.index("Over seeds: mean ± half-width of the 95% confidence interval (Student's t)") + 2]
    val_losses = [figures(load_run(tmp_path / "slow" / f"seed-{s}"))["val_loss"] for s in range(3)]
    assert seeds.split()[:4] == ["slow", "3", f"{statistics.fmean(val_losses):.4g}", "±"]
    verdict = next(line for line in lines if " on val_loss" in line)
    assert verdict.startswith("fast beats slow on val_loss beyond seed noise (lower is better;")
    assert "Welch's t-test p=" in verdict and "3 and 3 seeds" in verdict
    assert "fast beats slow on val_loss" in (tmp_path / "compare.html").read_text()
    code, out = epochal_cli("compare", tmp_path / "slow", tmp_path / "fast", "--metric", "val_auc")
    assert code == 1 and "--metric val_auc is not a figure of these runs; they have val_loss, val_accuracy" in out
    code, out = epochal_cli("train", *COMMON, "--seeds", "1", "--out", tmp_path)
    assert (code, out.splitlines()[-1]) == (1, "Error: --seeds must be at least 2: seed noise is measured over "
                                               "several runs. Received: 1")


def test_train_with_rollback_recovers_from_a_spike_and_records_it(tmp_path, epochal_cli):
    # Adam at 1.0 on the digits MLP spikes within two epochs (measured: a rollback in each)
    code, out = epochal_cli("train", "--lr", "1.0", "--rollback", "--epochs", "2", "--patience", "50", "--verbose",
                            "2", "--out", tmp_path, "--name", "hot")
    assert code == 0, out
    said = re.findall(r"Rollback (\d)/3: epoch (\d+), batch (\d+): loss (\S+) above (\S+) \(10 x the recent median\); "
                      r"back to the state (?:before the first epoch|after epoch (\d+)), skipping batch \3 and learning "
                      r"rate x0.5 from batch \3 on.", out)
    assert said, out
    events = History.load(tmp_path / "hot" / "history.json").events
    assert [(e["kind"], e["epoch"] + 1, e["batch"], e["reason"]) for e in events] == [
        ("rollback", int(epoch), int(batch), "spike") for _, epoch, batch, *_ in said]
    assert all(float(loss) > float(limit) for _, _, _, loss, limit, _ in said)
    assert tomllib.loads((tmp_path / "hot" / "config.toml").read_text())["rollback"] is True
