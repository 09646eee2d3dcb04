"""A variational autoencoder on scikit-learn's bundled digits: the KL term lives in `compute_loss`.

    python examples/vae_digits.py [--epochs 30] [--latent 2]

The module returns its reconstruction and keeps the batch's KL divergence as an attribute; the
compiled loss ("binary_crossentropy" between the pixels and their reconstruction) is the first part
of `compute_loss`, the KL term the second. Training and evaluation both use it, and every compile
option still applies (try `--precision bf16-mixed` or running it under `torchrun`).
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn

import epochal


class VAE(nn.Module):
    """64 pixels -> a Gaussian over `latent` dimensions -> 64 pixel probabilities."""

    def __init__(self, latent: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, hidden), nn.ReLU())
        self.mean, self.log_variance = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 64), nn.Sigmoid())
        self.kl = torch.zeros(())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(pixels)
        mean, log_variance = self.mean(hidden), self.log_variance(hidden)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)  # the reparameterisation trick
        # Per sample, summed over latent dimensions, then averaged over the batch (Keras's VAE example).
        self.kl = (-0.5 * (1 + log_variance - mean**2 - log_variance.exp()).sum(dim=1)).mean()
        return self.decoder(z)


class VAEModel(epochal.Model):
    """The compiled reconstruction loss, scaled to a sum over pixels, plus the KL divergence."""

    def compute_loss(self, x, y, y_pred, sample_weight=None):
        reconstruction = super().compute_loss(x, y, y_pred, sample_weight) * 64
        return reconstruction + self.module.kl


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--latent", type=int, default=2)
    parser.add_argument("--samples", type=int, default=None, help="use only the first N images")
    parser.add_argument("--precision", default="32")
    args = parser.parse_args(argv)

    pixels = torch.tensor(load_digits().data[: args.samples], dtype=torch.float32) / 16.0  # in [0, 1]
    torch.manual_seed(0)
    model = VAEModel(VAE(args.latent), device="cpu")
    model.compile(optimizer="adam", loss="binary_crossentropy", precision=args.precision)
    history = model.fit(pixels, pixels, epochs=args.epochs, batch_size=64, validation_split=0.2, verbose=2)
    result = model.evaluate(pixels, pixels, verbose=0)
    with torch.no_grad():
        samples = model.module.decoder(torch.randn(4, args.latent))
    print(f"Evaluation loss (reconstruction + KL): {result['loss']:.3f}; four generated digits have mean pixel "
          f"{samples.mean():.3f} (the data's: {pixels.mean():.3f})")
    return {"first_loss": history.history["loss"][0], "last_loss": history.history["loss"][-1], **result}


if __name__ == "__main__":
    main()
