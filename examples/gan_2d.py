"""A GAN on 2-D toy data (eight Gaussians on a ring), with two optimizers in a custom `train_step`.

    python examples/gan_2d.py [--epochs 40]

`compile(optimizer={...})` names one optimizer per network; `train_step` updates the discriminator,
then the generator, each with `self.backward(loss, optimizer=name)` and `self.apply_gradients(name)`,
which carry every compile option (precision, accumulation, clipping, the gradient sync under torchrun)
and only touch the named optimizer's parameters. `fit(x)` needs no targets: the step uses none.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

import epochal

NOISE = 8


class GAN(nn.Module):
    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(NOISE, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                       nn.Linear(hidden, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.generator(noise)


class GANModel(epochal.Model):
    def train_step(self, data):
        real = data[0]
        fake = self(torch.randn(len(real), NOISE, device=real.device))
        ones, zeros = torch.ones(len(real), 1, device=real.device), torch.zeros(len(real), 1, device=real.device)
        judge = self.module.discriminator
        d_loss = (F.binary_cross_entropy_with_logits(judge(real), ones)
                  + F.binary_cross_entropy_with_logits(judge(fake.detach()), zeros))
        self.backward(d_loss, optimizer="discriminator")
        self.apply_gradients(optimizer="discriminator")
        g_loss = F.binary_cross_entropy_with_logits(judge(fake), ones)
        self.backward(g_loss, optimizer="generator")
        self.apply_gradients(optimizer="generator")
        return {"d_loss": d_loss, "g_loss": g_loss}


def ring(samples: int, generator: torch.Generator) -> torch.Tensor:
    """Eight Gaussians (standard deviation 0.05) centred on the unit circle."""
    angles = torch.randint(0, 8, (samples,), generator=generator) * (2 * math.pi / 8)
    centres = torch.stack([angles.cos(), angles.sin()], dim=1)
    return centres + 0.05 * torch.randn(samples, 2, generator=generator)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=4096)
    args = parser.parse_args(argv)

    points = ring(args.samples, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    gan = GAN()
    model = GANModel(gan, device="cpu")
    model.compile(optimizer={"generator": ("adam", gan.generator), "discriminator": ("adam", gan.discriminator)})
    history = model.fit(points, epochs=args.epochs, batch_size=128, verbose=2)
    with torch.no_grad():
        generated = model.predict(torch.randn(2048, NOISE))
    radius = generated.norm(dim=1)
    print(f"Generated points: mean distance from the centre {radius.mean():.3f} (real: 1.0), "
          f"spread {radius.std():.3f}")
    return {"radius": float(radius.mean()), **{key: values[-1] for key, values in history.history.items()}}


if __name__ == "__main__":
    main()
