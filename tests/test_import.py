"""`import epochal` stays light: heavy optional dependencies load only when used."""

import os
import subprocess
import sys

HEAVY = ("pandas", "matplotlib", "tensorboard", "sklearn", "torchmetrics", "mlflow", "playwright", "torchinfo",
         "IPython", "nbclient", "scipy")


def test_import_epochal_does_not_import_heavy_optional_dependencies_and_pandas_works_when_given():
    # A fresh process, also because torch warns about read-only arrays (pandas') only once per process.
    script = (
        "import sys, warnings, epochal, epochal.callbacks, epochal.losses\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
        "import numpy as np, pandas as pd, torch\n"
        "warnings.simplefilter('error')\n"
        "model = epochal.Model(torch.nn.Linear(2, 1), device='cpu')\n"
        "model.compile(optimizer='sgd', loss='mse')\n"
        "frame = pd.DataFrame({'a': np.arange(4.0, dtype='float32'), 'b': np.ones(4, dtype='float32')})\n"
        "model.fit(frame, pd.Series(np.zeros(4, dtype='float32')), verbose=0)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_public_names():
    import epochal

    assert {"Model", "History", "callbacks", "losses"} <= set(dir(epochal))
    assert {"Callback", "EarlyStopping", "LambdaCallback", "MLflowLogger", "LiveLearningCurves"} <= set(
        dir(epochal.callbacks))
    assert {"interpret", "summary", "get_compile_config"} <= set(dir(epochal.Model))
    assert "to_html" in dir(epochal.History)
    assert {"Model", "History", "callbacks", "losses", "metrics"} <= set(dir(epochal))
    assert {"AUC", "Precision", "F1Score", "MeanIoU", "RootMeanSquaredError", "R2Score"} <= set(dir(epochal.metrics))
    assert {"Callback", "EarlyStopping", "LambdaCallback"} <= set(dir(epochal.callbacks))
