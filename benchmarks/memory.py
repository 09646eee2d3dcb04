"""Per-rank memory of DDP and FSDP on a model of about 50M parameters, 2 processes, and a markdown report.

Each strategy runs in its own torchrun launch (peak RSS is a per-process high-water mark), training the
same MLP (64-4096-4096-4096-4096-10, 50.6M parameters) with Adam for one epoch of 8 global batches of
32. After `fit`, each rank reports the bytes it holds of parameters, gradients and optimizer state
(its shards under FSDP), its peak RSS, the RSS before the model was built, the fit's wall time and,
on CUDA, peak GPU memory allocated:

    python benchmarks/memory.py                   # CPU, gloo
    python benchmarks/memory.py --device cuda     # one GPU per process, NCCL
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WIDTH, BLOCKS, INPUTS, CLASSES = 4096, 3, 64, 10


def _local_bytes(tensors: Any) -> int:
    from epochal.dtensors import is_sharded

    total = 0
    for tensor in tensors:
        if tensor is None:
            continue
        local = tensor.to_local() if is_sharded(tensor) else tensor
        total += local.numel() * local.element_size()
    return total


def worker(strategy: str, device: str, out: str) -> None:
    """One rank of one launch: train, then write what it holds to `out`.<rank>.json."""
    import torch

    import epochal
    from epochal import parallel

    torch.set_num_threads(1)
    parallel.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(INPUTS, WIDTH), torch.nn.ReLU()]
    for _ in range(BLOCKS):
        layers += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
    module = torch.nn.Sequential(*layers, torch.nn.Linear(WIDTH, CLASSES))
    parameters = sum(p.numel() for p in module.parameters())
    model = epochal.Model(module, device=device, distributed=strategy)
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(256, INPUTS, generator=generator)
    y = torch.randint(0, CLASSES, (256,), generator=generator)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    optimizer_state = [value for state in model.optimizer.state.values() for value in state.values()  # type: ignore[union-attr]
                       if isinstance(value, torch.Tensor)]
    report = {
        "strategy": strategy, "rank": parallel.rank(), "parameters": parameters,
        "parameter_bytes": _local_bytes(module.parameters()),
        "gradient_bytes": _local_bytes(p.grad for p in module.parameters()),
        "optimizer_bytes": _local_bytes(optimizer_state),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "baseline_rss": baseline_rss,
        "fit_seconds": seconds,
        "peak_gpu": torch.cuda.max_memory_allocated() if device == "cuda" else None,
    }
    with open(f"{out}.{parallel.rank()}.json", "w") as handle:
        json.dump(report, handle)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def launch(strategy: str, device: str, folder: str) -> list[dict[str, Any]]:
    out = os.path.join(folder, strategy)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH"))
                                                       if p), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
               "--worker", strategy, "--device", device, "--out", out]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in (0, 1)]


def megabytes(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:,.0f}"


def report(results: dict[str, list[dict[str, Any]]], device: str) -> str:
    lines = [f"Model: MLP {INPUTS}-" + "-".join([str(WIDTH)] * (BLOCKS + 1)) + f"-{CLASSES}, "
             f"{results['ddp'][0]['parameters'] / 1e6:.1f}M parameters, Adam, 2 processes on {device}. MiB per rank "
             "(rank 0 / rank 1).", "",
             "| strategy | parameters | gradients | optimizer state | params + grads + optimizer | peak RSS | RSS before "
             "the model | peak GPU allocated | fit, s |", "|---|---|---|---|---|---|---|---|---|"]
    for strategy, ranks in results.items():
        def both(key: str) -> str:
            return " / ".join(megabytes(rank[key]) for rank in ranks)

        state = " / ".join(megabytes(r["parameter_bytes"] + r["gradient_bytes"] + r["optimizer_bytes"]) for r in ranks)
        lines.append(f"| {strategy.upper()} | {both('parameter_bytes')} | {both('gradient_bytes')} | "
                     f"{both('optimizer_bytes')} | {state} | {both('peak_rss')} | {both('baseline_rss')} | "
                     f"{both('peak_gpu')} | {max(r['fit_seconds'] for r in ranks):.1f} |")
    ddp, fsdp = (sum(r["parameter_bytes"] + r["gradient_bytes"] + r["optimizer_bytes"] for r in results[s])
                 for s in ("ddp", "fsdp"))
    lines += ["", f"FSDP's per-rank state is {fsdp / ddp:.3f} of DDP's."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--worker", choices=["ddp", "fsdp"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.device, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="epochal-memory-") as folder:
        results = {strategy: launch(strategy, args.device, folder) for strategy in ("ddp", "fsdp")}
    print(report(results, args.device))


if __name__ == "__main__":
    main()
