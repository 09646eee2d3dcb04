"""The export formats: each builds a program from a module as bytes, and loads those bytes back as a
function of a batch's inputs returning the flat list of outputs, to check what will be written."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

from epochal._optional import require
from epochal.data.structure import Tree, call_module, flatten

#: A loaded program: a batch's inputs (as `x` in `fit`) -> its outputs, flattened.
Runner = Callable[[Tree], list[torch.Tensor]]


class ProgramFormat(Protocol):
    """One way of writing a module as a program that runs without its Python class."""

    suffix: str

    def build(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
              dynamic_shapes: Any) -> bytes: ...

    def load(self, data: bytes) -> Runner: ...


class TorchExport:
    """`torch.export`: an `ExportedProgram` saved as a `.pt2` file (`torch.export.load(path).module()` runs it)."""

    suffix = ".pt2"

    def build(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
              dynamic_shapes: Any) -> bytes:
        program = torch.export.export(module, args, kwargs=kwargs, dynamic_shapes=dynamic_shapes)
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        return buffer.getvalue()

    def load(self, data: bytes) -> Runner:
        module = torch.export.load(io.BytesIO(data)).module()
        return lambda x: flatten(call_module(module, x))


class Onnx:
    """ONNX through torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`), run by onnxruntime on the CPU."""

    suffix = ".onnx"

    def build(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
              dynamic_shapes: Any) -> bytes:
        require("onnxscript")
        with _quiet_exporter():
            program = torch.onnx.export(module, args, kwargs=kwargs, dynamo=True, dynamic_shapes=dynamic_shapes,
                                        verbose=False)
        return program.model_proto.SerializeToString()  # type: ignore[union-attr]

    def load(self, data: bytes) -> Runner:
        session = require("onnxruntime").InferenceSession(data, providers=["CPUExecutionProvider"])
        names = [argument.name for argument in session.get_inputs()]

        def run(x: Tree) -> list[torch.Tensor]:
            # ONNX takes the inputs flattened in the order torch.export saw them, which is `x`'s own order.
            feed = {name: leaf.detach().cpu().numpy() for name, leaf in zip(names, flatten(x))}
            return [torch.from_numpy(output) for output in session.run(None, feed)]

        return run


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter logs missing torchvision operators and warns about its own internals on every
    call; none of it concerns the user, whose model is checked after export anyway."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="# The axis name")
            yield
    finally:
        logger.setLevel(level)
