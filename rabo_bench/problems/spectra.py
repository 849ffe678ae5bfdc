"""Random matrices with prescribed spectra and centred per-sample noise, from given generators."""

from __future__ import annotations

import torch


def random_orthogonal(n: int, rng: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=rng, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))


def spd_with_spectrum(
    n: int, low: float, high: float, rng: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """A symmetric matrix whose eigenvalues lie in [low, high] and include both ends (n >= 2)."""
    eig = low + (high - low) * torch.rand(n, generator=rng, dtype=dtype)
    eig[0] = low
    if n > 1:
        eig[1] = high
    q = random_orthogonal(n, rng, dtype)
    return (q * eig) @ q.T


def centred(samples: torch.Tensor) -> torch.Tensor:
    """Subtract the mean over the first (sample) axis, so a uniform minibatch is unbiased."""
    return samples - samples.mean(dim=0, keepdim=True)


def symmetric_noise(
    count: int, n: int, bound: float, rng: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """``count`` centred symmetric n x n perturbations, each of spectral norm at most ``bound``."""
    z = torch.randn(count, n, n, generator=rng, dtype=dtype)
    s = centred((z + z.transpose(1, 2)) / 2)
    norms = torch.linalg.matrix_norm(s, ord=2)
    return s * (bound / norms.max().clamp_min(torch.finfo(dtype).tiny))
