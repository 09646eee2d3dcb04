"""Benchmark epochal beside a hand-written PyTorch loop and the peers on W1–W5 and print a markdown report.

Every measurement runs `measure.py` in a fresh process; variants alternate (hand, hand-compiled, eager,
compiled, lightning, keras-torch, keras-jax, hand, ...) and repeat, and the report gives medians with
min–max, ratios to `hand` and peak RSS, plus the start-up cost of `import epochal` beside `import
torch`. A peer that cannot be imported shows as n/a. Progress goes to stderr, the report to stdout:

    python benchmarks/run.py                                    # everything, 3 repeats
    python benchmarks/run.py --workloads W2 --variants hand,eager,compiled --repeats 3

On a GPU, `--device cuda` trains there (the hand-written loop too), adds the `graphs` variant
(compiled steps replayed as CUDA graphs) and a column of peak GPU memory allocated, and runs every
variant again in `bf16-mixed` (`--precisions`). A language model (W4) adds a column of training tokens/s
and MFU against the GPU's datasheet peak (or `--peak-tflops`).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flops import PRECISIONS
from measure import CPU_VARIANTS, VARIANTS
from workloads import VALIDATION_SHARE, WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
MEASURE = Path(__file__).with_name("measure.py")
Result = dict[str, Any]
Key = tuple[str, str, str]  # workload, variant, precision


def _env() -> dict[str, str]:
    """The children's environment: this checkout's `src/` first on the path, so it is what gets measured."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def _prefix(pin: bool) -> list[str]:
    return ["taskset", "-c", "0"] if pin else []


def run_child(variant: str, workload: str, precision: str, args: argparse.Namespace) -> Result:
    """One measurement in a fresh process; a crash becomes status "error" with stderr's last line."""
    command = [*_prefix(args.pin), sys.executable, str(MEASURE), variant, workload, "--epochs", str(args.epochs),
               "--seed", str(args.seed), "--device", args.device, "--precision", precision]
    if args.samples is not None:
        command += ["--samples", str(args.samples)]
    if args.peak_tflops is not None:
        command += ["--peak-tflops", str(args.peak_tflops)]
    if args.pin:
        command += ["--threads", "1"]
    # A private inductor cache per process: a compiled variant pays its real, cold compile each time.
    with tempfile.TemporaryDirectory(prefix="epochal-bench-") as cache:
        env = {**_env(), "TORCHINDUCTOR_CACHE_DIR": cache}
        done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return {"status": "error", "reason": lines[-1]}
    result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def time_imports(runs: int, pin: bool) -> dict[str, list[float]]:
    """Wall seconds of `python -c "import <name>"` for torch and epochal, alternating; empty if it fails.

    `epochal` loads its public names on first use, so its import reaches for `epochal.Model` too:
    what a script that trains pays. `src/` is byte-compiled first, as `pip install` does for an
    installed package: with PYTHONDONTWRITEBYTECODE set (as on these machines) an editable checkout
    would otherwise recompile every module on every import (~0.15 s here) and torch, installed, would not."""
    import compileall

    compileall.compile_dir(str(ROOT / "src"), quiet=1)
    times: dict[str, list[float]] = {"torch": [], "epochal": []}
    statements = {"torch": "import torch", "epochal": "import epochal; epochal.Model"}
    failed = set()
    for _ in range(runs):
        for name, elapsed in times.items():
            start = time.perf_counter()
            done = subprocess.run([*_prefix(pin), sys.executable, "-c", statements[name]],
                                  check=False, capture_output=True, env=_env(), cwd=ROOT)
            elapsed.append(time.perf_counter() - start)
            if done.returncode:
                failed.add(name)
    return {name: [] if name in failed else elapsed for name, elapsed in times.items()}


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def _machine(device: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    machine = f"{len(os.sched_getaffinity(0))} CPUs (nproc) · {cpu} · {platform.system()} {platform.release()}"
    if device.startswith("cuda"):
        import torch

        machine += f" · GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    return machine


def _revision() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], check=False, capture_output=True, text=True, cwd=ROOT).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain") else "")


def _median(runs: list[Result], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _utilisation(runs: list[Result]) -> str:
    """The tokens/s cell of a language model's row: median tokens/s and, where a peak is known, median MFU."""
    tokens = f"{_median(runs, 'tokens_per_s'):,.0f}"
    mfus = [r["mfu"] for r in runs if r["mfu"] is not None]
    return tokens + (f" ({statistics.median(mfus):.1%})" if mfus else "")


def _rows(results: dict[Key, list[Result]], workloads: list[str], variants: list[str], precisions: list[str],
          gpu: bool, tokens: bool) -> list[str]:
    """Table rows, then the notes (n/a, errors, warnings) that go under the table, each listed once. Ratios are
    to the hand loop at the same precision; a row not in float32 names its precision beside the variant."""
    rows: list[str] = []
    notes: dict[str, list[str]] = {}
    empty = " |" * (6 + tokens + gpu)
    for w in workloads:
        for p in precisions:
            ok = {v: [r for r in results[w, v, p] if r["status"] == "ok"] for v in variants}
            hand = ok.get("hand", [])
            for v in variants:
                name = v if p == "32" else f"{v}, {p}"
                failures = [f"{r['status']}: {r['reason']}" for r in results[w, v, p] if r["status"] != "ok"]
                for note in failures + [f"warned: {m}" for r in ok[v] for m in r["warnings"]]:
                    if f"{w} {name}" not in notes.setdefault(note, []):
                        notes[note].append(f"{w} {name}")
                runs = ok[v]
                if not runs:
                    rows.append(f"| {w} | {name} | n/a |" + empty)
                    continue
                speed, rss = _median(runs, "samples_per_s"), _median(runs, "max_rss_mib")
                ratio = f"{speed / _median(hand, 'samples_per_s'):.2f}×" if hand else ""
                cpu = _median(runs, "samples_per_cpu_s")
                cpu_ratio = f" ({cpu / _median(hand, 'samples_per_cpu_s'):.2f}×)" if hand else ""
                rss_ratio = f" ({rss / _median(hand, 'max_rss_mib'):.2f}×)" if hand else ""
                accuracy = statistics.median(r["logs"].get("val_accuracy", math.nan) for r in runs)
                utilisation = (f" {_utilisation(runs) if 'tokens_per_s' in runs[0] else ''} |") * tokens
                rows.append(f"| {w} | {name} | {_spread([r['samples_per_s'] for r in runs], ',.0f')} | {ratio} "
                            f"| {cpu:,.0f}{cpu_ratio} |{utilisation} {_median(runs, 'setup_s'):.1f} "
                            f"| {_median(runs, 'warmup_s'):.1f} | {rss:.0f}{rss_ratio} "
                            f"| {accuracy:.3f} |" + (f" {_median(runs, 'max_gpu_mib'):.0f} |" if gpu else ""))
    return rows + [""] * bool(notes) + [f"- {', '.join(where)}: {note}" for note, where in notes.items()]


def report(args: argparse.Namespace, results: dict[Key, list[Result]],
           imports: dict[str, list[float]], load: tuple[float, float]) -> str:
    """The markdown section for BENCHMARKS.md: machine, versions, command, results and start-up."""
    workloads, variants, precisions = args.workloads.split(","), args.variants.split(","), args.precisions.split(",")
    gpu = args.device.startswith("cuda")
    tokens = any(WORKLOADS[w].language_model for w in workloads)
    threads = sorted({r["threads"] for rs in results.values() for r in rs if r["status"] == "ok"})

    def sizes(name: str) -> str:
        samples = args.samples or WORKLOADS[name].samples
        return f"{samples - int(samples * VALIDATION_SHARE):,} + {int(samples * VALIDATION_SHARE):,}"

    lines = [
        f"### {datetime.datetime.now().isoformat(timespec='minutes')}",
        "",
        f"- Machine: {_machine(args.device)}; load average {load[0]:.2f} before, {load[1]:.2f} after",
        f"- Python {platform.python_version()}, torch {importlib.metadata.version('torch')}, epochal {_revision()}",
        f"- Command: `python {shlex.join(sys.argv)}`",
        f"- {args.epochs} epochs (the first excluded), {args.repeats} alternating repeats; torch threads {threads}; "
        f"device {args.device}; precisions {', '.join(precisions)} (× hand: to the hand loop at the same precision)"
        + ("; pinned with `taskset -c 0`" if args.pin else ""),
        "- " + "; ".join(f"{w}: {WORKLOADS[w].description}, {sizes(w)} training + validation samples"
                         for w in workloads),
        "",
        ("| workload | variant | train samples/s, median (min–max) | × hand | per CPU-second (× hand) |"
         + " train tokens/s (MFU) |" * tokens
         + " set-up, s | warm-up epoch, s | peak RSS, MiB (× hand) | val accuracy |" + " peak GPU, MiB |" * gpu),
        "|---|---|---|---|---|---|---|---|---|" + "---|" * (tokens + gpu),
        *_rows(results, workloads, variants, precisions, gpu, tokens),
    ]
    lines += ["", "| start-up (wall s) | median (min–max) |", "|---|---|"]
    for name, times in imports.items():
        lines.append(f'| `python -c "import {name}"` | {_spread(times, ".2f") if times else "failed"} |')
    if imports["torch"] and imports["epochal"]:
        extra = statistics.median(imports["epochal"]) - statistics.median(imports["torch"])
        lines.append(f"| epochal over torch | {extra:+.2f} |")
    return "\n".join(lines)


def _names(value: str, known: tuple[str, ...] | list[str], option: str) -> str:
    unknown = [n for n in value.split(",") if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"{option} must be names from {', '.join(known)}. Received: {value}")
    return value


def main() -> None:
    """Run every (workload, variant) `--repeats` times, alternating variants, then print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        type=lambda v: _names(v, sorted(WORKLOADS), "--workloads"))
    parser.add_argument("--variants", default=None, type=lambda v: _names(v, VARIANTS, "--variants"),
                        help="default: all but graphs on a CPU; all but keras-jax on CUDA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up and excluded")
    parser.add_argument("--samples", type=int, default=None,
                        help="training + validation samples; default: each workload's own (60,000; W4: 1,280)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pin", action="store_true", help="run on one vCPU (taskset -c 0) with 1 torch thread")
    parser.add_argument("--import-runs", type=int, default=5, help="runs of each start-up measurement")
    parser.add_argument("--device", default="cpu", help='where to train: "cpu" or "cuda"')
    parser.add_argument("--precisions", default=None, type=lambda v: _names(v, PRECISIONS, "--precisions"),
                        help='every variant at each: "32", "bf16-mixed"; default: 32 on a CPU, both on CUDA')
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for W4's MFU; default: the GPU's datasheet figure")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {args.device}: torch sees no CUDA GPU on this machine")
    gpu = args.device.startswith("cuda")
    if args.variants is None:
        args.variants = ",".join(v for v in VARIANTS if v != "keras-jax") if gpu else ",".join(CPU_VARIANTS)
    if args.precisions is None:
        args.precisions = ",".join(PRECISIONS) if gpu else "32"
    workloads, variants, precisions = args.workloads.split(","), args.variants.split(","), args.precisions.split(",")

    load_before = os.getloadavg()[0]
    results: dict[Key, list[Result]] = {(w, v, p): [] for w in workloads for v in variants for p in precisions}
    total, count = len(results) * args.repeats, 0
    for w in workloads:
        for repeat in range(args.repeats):
            for p in precisions:
                for v in variants:
                    count += 1
                    result = run_child(v, w, p, args)
                    results[w, v, p].append(result)
                    summary = (f"{result['samples_per_s']:,.0f} samples/s ({result['samples_per_cpu_s']:,.0f} per CPU-s), "
                               f"set-up {result['setup_s']:.1f} s, warm-up {result['warmup_s']:.1f} s, "
                               f"RSS {result['max_rss_mib']:.0f} MiB, logs {result['logs']}"
                               if result["status"] == "ok" else f"{result['status']}: {result['reason']}")
                    print(f"[{count}/{total}] {w} {v} {p} #{repeat + 1}: {summary}", file=sys.stderr, flush=True)
    imports = time_imports(args.import_runs, args.pin)
    print(report(args, results, imports, (load_before, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
