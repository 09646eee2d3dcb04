"""Model FLOPs utilisation (MFU): the share of a device's peak arithmetic a language model's training uses.

MFU = training FLOPs per token × tokens per second / the device's peak FLOP/s at the run's precision
(nanoGPT's `estimate_mfu`). Peaks are the vendors' datasheet figures, dense (no sparsity); float32
is the CUDA cores' figure, since torch's float32 products do not use TF32 unless told to.
"""

from __future__ import annotations

#: Datasheet peak TFLOP/s by GPU name, as `torch.cuda.get_device_name` spells it: (float32, bfloat16 tensor
#: cores). Looked up by the first name contained in the device's, so "H100 PCIe" comes before "H100" (SXM).
PEAK_TFLOPS = {
    "H200": (66.9, 989.4),
    "H100 PCIe": (51.2, 756.0),
    "H100": (66.9, 989.4),
    "A100": (19.5, 312.0),
    "L4": (30.3, 121.0),
}
PRECISIONS = ("32", "bf16-mixed")


def peak_flops(device_name: str, precision: str) -> float | None:
    """The device's peak FLOP/s at `precision` ("32" or "bf16-mixed"), or None for a device not in `PEAK_TFLOPS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}. Received: precision={precision!r}")
    found = next((peaks for name, peaks in PEAK_TFLOPS.items() if name in device_name), None)
    return None if found is None else found[PRECISIONS.index(precision)] * 1e12


def mfu(flops_per_token: float, tokens_per_s: float, peak: float) -> float:
    """The share of `peak` FLOP/s that `tokens_per_s` training tokens of `flops_per_token` each make up."""
    return flops_per_token * tokens_per_s / peak
