"""W4's tokens/s and MFU columns: the FLOPs a training token costs, the GPU peaks, and the report's table."""

import argparse
from unittest import mock

import pytest
import torch
from flops import mfu, peak_flops
from run import report
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformer import CONTEXT, BytesGPT


def test_the_flops_estimate_matches_what_a_training_step_computes():
    model = BytesGPT(layers=2, width=64, heads=2)
    tokens = torch.randint(0, 256, (2, CONTEXT))
    # The math kernel spells attention as products the counter sees (the CPU's fused kernel has no FLOP formula).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    counted = counter.get_total_flops() / tokens.numel()
    # The estimate also counts 6 FLOPs per bias and norm weight, which the counter (products only) does not.
    assert model.training_flops_per_token() == pytest.approx(counted, rel=0.02)


def test_peaks_are_looked_up_by_the_devices_name_and_precision():
    assert peak_flops("NVIDIA H200", "bf16-mixed") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H100 PCIe", "32") == pytest.approx(51.2e12)
    assert peak_flops("NVIDIA H100 80GB HBM3", "32") == pytest.approx(66.9e12)
    assert peak_flops("AMD EPYC 7B13", "32") is None
    with pytest.raises(ValueError, match=r"`precision` must be one of 32, bf16-mixed. Received: precision='16-mixed'"):
        peak_flops("NVIDIA H200", "16-mixed")
    assert mfu(2e7, 5e6, 1e15) == pytest.approx(0.1)


def _run(samples_per_s, **extra):
    return {"status": "ok", "samples_per_s": samples_per_s, "samples_per_cpu_s": samples_per_s, "setup_s": 1.0,
            "warmup_s": 1.0, "max_rss_mib": 500.0, "max_gpu_mib": 100.0, "logs": {"val_accuracy": 0.5},
            "warnings": [], "threads": 1, **extra}


def test_the_report_has_a_tokens_column_and_a_row_per_variant_and_precision():
    args = argparse.Namespace(workloads="W4,W2", variants="hand,eager", precisions="32,bf16-mixed", device="cuda:0",
                              epochs=3, repeats=1, samples=None, pin=False)
    results = {}
    for workload in ("W4", "W2"):
        for precision, speed in (("32", 100.0), ("bf16-mixed", 300.0)):
            def tokens(speed):
                return {"tokens_per_s": speed * CONTEXT, "mfu": 0.25} if workload == "W4" else {}

            results[workload, "hand", precision] = [_run(speed, **tokens(speed))]
            results[workload, "eager", precision] = [_run(speed * 0.9, **tokens(speed * 0.9)) if workload == "W4"
                                                     else {"status": "n/a", "reason": "unavailable"}]
    with mock.patch("run._machine", return_value="a GPU"):
        table = [line for line in report(args, results, {"torch": [1.0], "epochal": [1.1]}, (0.0, 0.0)).splitlines()
                 if line.startswith("| W")]
    header_cells = 11  # nine columns, tokens/s (MFU), peak GPU
    assert [line.count("|") - 1 for line in table] == [header_cells] * 8
    assert table[2].startswith("| W4 | hand, bf16-mixed | 300 (300–300) | 1.00× |")
    assert "| 34,560 (25.0%) |" in table[3]  # eager bf16-mixed: 0.9 × 300 samples/s × 128 tokens
    assert table[5].startswith("| W2 | eager | n/a |")
