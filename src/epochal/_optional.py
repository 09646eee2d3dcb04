"""Optional dependencies (pandas, matplotlib, scikit-learn, torchmetrics, torchinfo, mlflow, onnx, scipy), imported
only when a feature needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

#: The pip extra that installs each optional module.
EXTRAS = {"pandas": "pandas", "matplotlib": "plot", "sklearn": "data", "torchmetrics": "metrics",
          "torchinfo": "summary", "mlflow": "mlflow", "onnxscript": "onnx", "onnxruntime": "onnx", "scipy": "stats"}


def require(module: str) -> ModuleType:
    """Import `module`, or raise an ImportError naming the `pip install 'epochal[...]'` that adds it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, "all")
        raise ImportError(f"This needs {top}, which is not installed: pip install 'epochal[{extra}]'") from error
