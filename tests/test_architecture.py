"""The shape of the house: no import cycle at any depth, no arrow pointing up a layer (pyproject's
import-linter contracts), and every module importable on its own, whatever was imported before."""

import subprocess
import sys
from pathlib import Path

import epochal

SOURCE = Path(epochal.__file__).parent


def _modules() -> list[str]:
    names = []
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_import_contracts_are_kept():
    """No cycle and no upward arrow; `lint-imports` names each broken import if there is one."""
    root = Path(__file__).resolve().parents[1]
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(root / "pyproject.toml"), no_cache=True) == 0  # its report names each broken import


def test_every_module_imports_on_its_own():
    """Each module imported first, in a process where no other epochal module is loaded yet."""
    modules = _modules()
    assert len(modules) > 40
    script = (
        "import importlib, sys\n"
        "import torch\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'epochal' or m.startswith('epochal.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        print(f'{name}: {type(error).__name__}: {error}')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr
