"""Federated bilevel problem with a quadratic lower level: y*(x) and grad F(x) in closed form.

Client i holds ``samples`` data points s; its losses are the means over them:

    g_i(x, y) = 1/2 y^T H_i y - y^T (B_i x + b_i),            (strongly convex in y)
    f_i(x, y) = 1/2 (y - c_i)^T P_i (y - c_i) + rho/2 ||x - a_i||^2 + nu * sum_k cos(x_k).

``nu > rho`` makes F non-convex in x (the cosine term is bounded, so F stays bounded below).
Every H_i, and so the global H = mean_i H_i, has its spectrum inside [mu_g, L_g]; hence
mu_g-strong convexity and L_g-smoothness of G(x, .) (SPEC A1, A2).

``coupling`` scales B_i: the strength of the x-y coupling, i.e. of dy*/dx. Sub-model methods
evaluate g_i at x ⊙ m, so their mask-noise floor (SPEC A5) grows with it.

Heterogeneity ``h`` in [0, 1]: each client's (H_i, B_i, b_i, P_i, c_i, a_i) is the common one
blended with a client-specific draw, weight h. h = 0 gives identical clients (zeta_f = zeta_g = 0).

Noise ``noise`` in [0, 1): per-sample perturbations of H_i (spectral norm <= noise * mu_g / 2,
so every sample's g is still (1 - noise/2) mu_g strongly convex), of B_i, b_i and c_i. They are
centred over each client's samples, so a uniform minibatch is an unbiased estimate of (f_i, g_i)
with bounded variance (SPEC A3). noise = 0 is the deterministic problem (batches are None).

Closed forms (never autograd):  y*(x) = H^{-1} (B x + b),  with (H, B, b) the client means, and
grad F(x) = mean_i grad_x f_i + B^T H^{-1} mean_i grad_y f_i  at y*(x)   (SPEC eq. 9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rabo_bench.params import Params
from rabo_bench.problems.base import Batch, BilevelProblem, client_row
from rabo_bench.problems.ranges import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    UNIT,
    Checked,
    Range,
    setting,
)
from rabo_bench.problems.registry import register_problem
from rabo_bench.problems.spectra import centred, spd_with_spectrum, symmetric_noise


@dataclass(frozen=True)
class QuadraticConfig(Checked):
    dim_x: int = setting(10, COUNT)
    dim_y: int = setting(10, COUNT)
    num_clients: int = setting(10, COUNT)
    mu_g: float = setting(0.5, POSITIVE)  # and <= L_g
    L_g: float = setting(2.0, POSITIVE)
    heterogeneity: float = setting(0.5, UNIT)
    noise: float = setting(0.0, Range(0, 1, high_open=True))
    samples: int = setting(32, COUNT)
    batch_size: int = setting(8, COUNT)  # drawn with replacement: may exceed samples
    rho: float = setting(0.1, NON_NEGATIVE)
    nu: float = setting(0.0, NON_NEGATIVE)
    coupling: float = setting(1.0, NON_NEGATIVE)
    seed: int = setting(0, SEED)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mu_g > self.L_g:
            raise ValueError(f"need mu_g <= L_g, got mu_g={self.mu_g}, L_g={self.L_g}")


class QuadraticBilevel(BilevelProblem):
    """The synthetic strongly convex quadratic problem; x = {"x": (dim_x,)}, y = {"y": (dim_y,)}."""

    vectorisable = True

    def __init__(self, config: QuadraticConfig | None = None, **overrides) -> None:
        cfg = config or QuadraticConfig(**overrides)
        self.config = cfg
        self.num_clients = cfg.num_clients
        self.mu_g, self.L_g = cfg.mu_g, cfg.L_g
        rng = torch.Generator().manual_seed(cfg.seed)
        dt, m, dx, dy, h = self.dtype, cfg.num_clients, cfg.dim_x, cfg.dim_y, cfg.heterogeneity

        def blend(common: torch.Tensor, draw) -> torch.Tensor:
            return torch.stack([(1 - h) * common + h * draw() for _ in range(m)])

        def spd(low: float, high: float) -> torch.Tensor:
            return spd_with_spectrum(dy, low, high, rng, dt)

        def gauss(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=rng, dtype=dt)

        self.H = blend(spd(cfg.mu_g, cfg.L_g), lambda: spd(cfg.mu_g, cfg.L_g))

        def coupling_draw(*shape: int) -> torch.Tensor:
            return cfg.coupling * gauss(*shape) / dx**0.5

        self.B = blend(coupling_draw(dy, dx), lambda: coupling_draw(dy, dx))
        self.b = blend(gauss(dy), lambda: gauss(dy))
        self.P = blend(spd(0.5, 1.5), lambda: spd(0.5, 1.5))
        self.c = blend(gauss(dy), lambda: gauss(dy))
        self.a = blend(gauss(dx), lambda: gauss(dx))
        self._samples = None
        if cfg.noise > 0:
            n, s = cfg.samples, cfg.noise
            self._samples = {
                "H": torch.stack(
                    [symmetric_noise(n, dy, s * cfg.mu_g / 2, rng, dt) for _ in range(m)]
                ),
                "B": s * centred(coupling_draw(n, m, dy, dx)).transpose(0, 1).contiguous(),
                "b": s * centred(gauss(n, m, dy)).transpose(0, 1).contiguous(),
                "c": s * centred(gauss(n, m, dy)).transpose(0, 1).contiguous(),
            }

    # -- data --------------------------------------------------------------------------------
    def _client_terms(self, client, batch: Batch, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Client ``client``'s terms ``keys`` of (H, B, b, c) on ``batch`` (only those: the
        minibatch noise is gathered per evaluation and dominates a vectorised round)."""
        terms = {k: client_row(getattr(self, k), client) for k in keys}
        if batch is None or self._samples is None:
            return terms
        return {
            k: v + client_row(self._samples[k], client, batch).mean(dim=0) for k, v in terms.items()
        }

    def _sample(self, rng: torch.Generator) -> Batch:
        if self._samples is None:
            return None
        return torch.randint(self.config.samples, (self.config.batch_size,), generator=rng)

    def sample_upper_batch(self, client: int, rng: torch.Generator) -> Batch:
        return self._sample(rng)

    def sample_lower_batch(self, client: int, rng: torch.Generator) -> Batch:
        return self._sample(rng)

    # -- losses ------------------------------------------------------------------------------
    def init_params(self, rng: torch.Generator) -> tuple[Params, Params]:
        x = torch.randn(self.config.dim_x, generator=rng, dtype=self.dtype)
        y = torch.randn(self.config.dim_y, generator=rng, dtype=self.dtype)
        return {"x": x}, {"y": y}

    def lower_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        t, yv = self._client_terms(client, batch, ("H", "B", "b")), y["y"]
        return 0.5 * yv @ t["H"] @ yv - yv @ (t["B"] @ x["x"] + t["b"])

    def upper_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        t, xv, cfg = self._client_terms(client, batch, ("c",)), x["x"], self.config
        r = y["y"] - t["c"]
        return (
            0.5 * r @ client_row(self.P, client) @ r
            + 0.5 * cfg.rho * torch.sum((xv - client_row(self.a, client)) ** 2)
            + cfg.nu * torch.sum(torch.cos(xv))
        )

    # -- closed forms ------------------------------------------------------------------------
    def inner_solution(self, x: Params) -> Params:
        xv = x["x"].detach()
        rhs = self.B.mean(0) @ xv + self.b.mean(0)
        return {"y": torch.linalg.solve(self.H.mean(0), rhs)}

    def hypergradient(self, x: Params) -> Params:
        xv, cfg = x["x"].detach(), self.config
        y_star = self.inner_solution(x)["y"]
        grad_y = torch.einsum("mij,mj->i", self.P, y_star - self.c) / self.num_clients
        grad_x = cfg.rho * (xv - self.a.mean(0)) - cfg.nu * torch.sin(xv)
        implicit = self.B.mean(0).T @ torch.linalg.solve(self.H.mean(0), grad_y)
        return {"x": grad_x + implicit}

    def evaluate(self, x: Params, y: Params) -> dict[str, float]:
        metrics = super().evaluate(x, y)
        metrics["grad_norm_sq"] = float(self.hypergradient(x)["x"].square().sum())
        metrics["inner_error"] = float((y["y"] - self.inner_solution(x)["y"]).norm())
        return metrics


register_problem("quadratic", QuadraticConfig, QuadraticBilevel)
