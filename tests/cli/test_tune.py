"""`epochal tune batch-size` and `tune lr` on tiny data: a table, a recommendation, a plot."""


def test_tune_batch_size(tmp_path, epochal_cli, is_png):
    code, out = epochal_cli("tune", "batch-size", "--data", "iris", "--sizes", "8,32,4096", "--epochs", "3",
                            "--out", tmp_path)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["batch", "size", "samples/s", "peak", "MB", "best", "val_accuracy", "at", "epoch",
                                "seconds", "to", "best"]
    assert [line.split()[0] for line in lines[1:3]] == ["8", "32"]  # 4096 exceeds the 96 training rows
    assert lines[4].startswith("peak MB: one training step's ")
    assert lines[5].startswith("Largest batch that trains: 96 (memory budget ")  # all 96 rows fit in one step
    assert lines[6].startswith("Recommended: --batch-size ")
    assert lines[7] == f"Plot: {tmp_path / 'tune-batch-size.png'}" and is_png(tmp_path / "tune-batch-size.png")


def test_tune_lr(tmp_path, epochal_cli, is_png):
    code, out = epochal_cli("tune", "lr", "--data", "iris", "--steps", "30", "--plot", tmp_path / "lr.png")
    assert code == 0, out
    swept, suggested, plot = out.splitlines()
    assert swept.startswith("Swept ") and suggested.startswith("Suggested learning rate: ")
    assert float(suggested.split()[-1]) > 1e-7
    assert plot == f"Plot: {tmp_path / 'lr.png'}" and is_png(tmp_path / "lr.png")
