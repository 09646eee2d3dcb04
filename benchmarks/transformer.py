"""W4's model and data: a decoder-only byte-level transformer (nanoGPT's shape) on the Python standard
library's own source files, which every machine has, so the benchmark downloads nothing."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 256  # bytes
CONTEXT = 128


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention through `F.scaled_dot_product_attention`, then a GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


class BytesGPT(nn.Module):
    """Tokens `(batch, CONTEXT)` int64 -> next-byte logits `(batch, CONTEXT, VOCAB)`; the head shares the embedding."""

    def __init__(self, layers: int = 4, width: int = 256, heads: int = 4) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, width), nn.Embedding(CONTEXT, width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        self.head.weight = self.tokens.weight  # weight tying, as nanoGPT
        for name, parameter in self.named_parameters():  # nanoGPT's initialisation
            if parameter.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(parameter, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.head(self.norm(self.blocks(self.tokens(tokens) + self.positions(positions))))

    def training_flops_per_token(self) -> int:
        """Floating-point operations of one training step (forward and backward) per token, nanoGPT's
        `estimate_mfu` (PaLM, appendix B): 6 per parameter (the position table, only looked up, left out;
        the tied embedding counted once, as the head's product) and 12·layers·context·width for attention."""
        parameters = sum(p.numel() for p in self.parameters()) - self.positions.weight.numel()
        width = self.tokens.embedding_dim
        return 6 * parameters + 12 * len(self.blocks) * CONTEXT * width


def stdlib_sequences(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` windows of `CONTEXT + 1` bytes from the standard library's `.py` files (sorted, joined),
    drawn without overlap in a seeded order -> inputs and next-byte targets, both `(count, CONTEXT)` int64."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    corpus = torch.frombuffer(bytearray(b"".join(p.read_bytes() for p in files)), dtype=torch.uint8)
    windows = corpus[: len(corpus) // (CONTEXT + 1) * (CONTEXT + 1)].view(-1, CONTEXT + 1)
    if count > len(windows):
        raise ValueError(f"--samples {count}: the standard library holds only {len(windows)} windows of {CONTEXT + 1} bytes")
    chosen = windows[torch.randperm(len(windows), generator=generator)[:count]].long()
    return chosen[:, :-1].contiguous(), chosen[:, 1:].contiguous()
