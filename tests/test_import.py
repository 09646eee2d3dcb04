"""`import epochal` stays light: heavy optional dependencies load only when used."""

import os
import subprocess
import sys

HEAVY = ("pandas", "matplotlib", "tensorboard", "sklearn", "torchmetrics")


def test_import_epochal_does_not_import_heavy_optional_dependencies():
    script = (
        "import sys, epochal, epochal.callbacks, epochal.losses\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_public_names():
    import epochal

    assert {"Model", "History", "callbacks", "losses"} <= set(dir(epochal))
    assert {"Callback", "EarlyStopping", "LambdaCallback"} <= set(dir(epochal.callbacks))
