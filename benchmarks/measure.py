"""Measure one variant on one workload, once, in this process; print the result as one JSON line.

`run.py` starts this script in a fresh process per measurement so that compile caches, allocator
state and peak RSS never leak from one variant into the next. Run by hand for a quick look:

    python benchmarks/measure.py hand W2 --samples 4096
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from flops import PRECISIONS, mfu, peak_flops
from workloads import WORKLOADS, Unsupported, Workload, build_module, hand_optimizer, make_data

#: "hand-compiled": the hand loop with `torch.compile(module)` (nanoGPT's recipe). "graphs": compiled, with
#: each compiled step replayed as a CUDA graph (CUDA only). The peers: PyTorch Lightning, Keras 3 on torch
#: and on JAX, each "unavailable" (n/a) when it cannot be imported.
VARIANTS = ("hand", "hand-compiled", "eager", "compiled", "graphs", "lightning", "keras-torch", "keras-jax")
#: What `run.py` measures unless told: everything that runs on a CPU, as the issue's one table.
CPU_VARIANTS = tuple(v for v in VARIANTS if v != "graphs")


def _trainer(variant: str, workload: Workload, device: str, seed: int, precision: str) -> Callable[..., Any]:
    # Imported here, not at the top, so the `hand` process never loads epochal (nor a peer): its RSS
    # and start-up stay those of plain PyTorch, and it runs even while epochal is broken.
    import functools

    optimizer = functools.partial(hand_optimizer, workload)
    if variant.startswith("hand"):
        import hand_loop

        return functools.partial(hand_loop.train, device=device, optimizer=optimizer,
                                 compile_module=variant == "hand-compiled", precision=precision)
    if variant == "lightning":
        import lightning_runner

        return functools.partial(lightning_runner.train, device=device, optimizer=optimizer, precision=precision)
    if variant.startswith("keras-"):
        import keras_runner

        def keras_train(module: Any, data: Any, *, batch_size: int, epochs: int) -> Any:
            return keras_runner.train(workload, data, backend=variant.removeprefix("keras-"), epochs=epochs, seed=seed,
                                      precision=precision)

        return keras_train
    if variant == "graphs" and not device.startswith("cuda"):
        raise Unsupported("CUDA graphs need a CUDA device")
    import epochal_runner

    return functools.partial(epochal_runner.train, jit_compile=variant in ("compiled", "graphs"),
                             optimizer=workload.optimizer, cuda_graphs=variant == "graphs", device=device,
                             precision=precision)


def measure(variant: str, workload_name: str, *, samples: int | None, epochs: int, seed: int,
            device: str = "cpu", precision: str = "32", peak_tflops: float | None = None) -> dict[str, Any]:
    """Train once at `precision` and return steady-state samples per second of wall time and of this process's
    CPU time (first epoch excluded), set-up and warm-up times, peak RSS and, on a GPU, peak GPU memory
    allocated; for a language model also tokens per second and MFU (`_utilisation`). `samples` defaults to
    the workload's."""
    workload = WORKLOADS[workload_name]
    train = _trainer(variant, workload, device, seed, precision)
    data = make_data(workload, samples or workload.samples, seed)
    module = build_module(workload, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        spans, logs = train(module, data, batch_size=workload.batch_size, epochs=epochs)
    # From the second epoch's start to the last one's end, so work done between epochs counts too.
    steady = len(data.x) * (len(spans) - 1)
    samples_per_s = steady / (spans[-1][1].wall - spans[1][0].wall)
    return {
        "status": "ok",
        "precision": precision,
        **(_utilisation(module, data.y[0].numel() * samples_per_s, device, precision, peak_tflops)
           if workload.language_model else {}),
        "samples_per_s": samples_per_s,
        "samples_per_cpu_s": steady / (spans[-1][1].cpu - spans[1][0].cpu),
        "warmup_s": spans[0][1].wall - spans[0][0].wall,
        "setup_s": spans[0][0].wall - started,  # before the first epoch: data, checks and, compiled, compilation
        "epoch_s": [end.wall - begin.wall for begin, end in spans],
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "max_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "logs": logs,
        "warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
        "threads": torch.get_num_threads(),
    }


def _utilisation(module: torch.nn.Module, tokens_per_s: float, device: str, precision: str,
                 peak_tflops: float | None) -> dict[str, float | None]:
    """Training tokens per second and their model FLOPs utilisation against `peak_tflops`, else the GPU's
    datasheet peak at `precision` (None where neither is known: a CPU, an unlisted GPU). Every variant is
    counted with the workload's own model's FLOPs (Keras's twin runs the same products)."""
    if peak_tflops is not None:
        peak: float | None = peak_tflops * 1e12
    else:
        peak = peak_flops(torch.cuda.get_device_name(device), precision) if device.startswith("cuda") else None
    flops_per_token = module.training_flops_per_token()  # type: ignore[operator]
    return {"tokens_per_s": tokens_per_s, "mfu": None if peak is None else mfu(flops_per_token, tokens_per_s, peak)}


def main() -> None:
    """Parse the command line, measure, print one JSON line; an unsupported variant prints status n/a."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--samples", type=int, default=None, help="training + validation samples; the workload's own "
                        "if unset (60,000; W4: 1,280)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs, the first excluded as warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads; torch's default if unset")
    parser.add_argument("--device", default="cpu", help='where to train: "cpu" or "cuda"')
    parser.add_argument("--precision", default="32", choices=PRECISIONS,
                        help='"32", or "bf16-mixed": autocast to bfloat16 in every variant')
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for MFU; default: the GPU's datasheet figure, none on a CPU")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first is warm-up). Received: {args.epochs}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        result = measure(args.variant, args.workload, samples=args.samples, epochs=args.epochs, seed=args.seed,
                         device=args.device, precision=args.precision, peak_tflops=args.peak_tflops)
    except Unsupported as error:
        result = {"status": "n/a", "reason": str(error)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
