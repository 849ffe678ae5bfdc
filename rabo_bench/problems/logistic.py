"""Federated hyperparameter tuning of L2-regularised logistic regression (non-quadratic inner).

Client i holds a training split (A_i, l_i) and a validation split (V_i, u_i), labels in {0, 1}.
The outer variable is a log-regularisation weight per feature, x = log(lambda):

    g_i(x, w) = mean_s [ softplus(a_s^T w) - l_s a_s^T w ] + 1/2 sum_k exp(x_k) w_k^2,
    f_i(x, w) = mean_s [ softplus(v_s^T w) - u_s v_s^T w ]            (validation loss).

G(x, .) is strongly convex with modulus min_k exp(x_k) and smooth with constant
||A^T A|| / 4 + max_k exp(x_k), but not quadratic, so y*(x) is nonlinear in x.

Heterogeneity ``h``: client i's features are shifted by h times a client-specific mean and its
labels come from w_true + h * (client-specific offset). Minibatches (``batch_size`` > 0) draw
sample indices uniformly with replacement: unbiased losses with bounded variance.

Closed forms (no autograd): y*(x) by Newton's method on G with the analytic Hessian, converged
to machine precision; grad F(x) = -(d^2 G / dy dx)^T [d^2 G / dy^2]^{-1} grad_y F by a dense
solve, with d^2 G / dy dx = diag(exp(x) * w).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rabo_bench.params import Params
from rabo_bench.problems.base import Batch, BilevelProblem, client_row
from rabo_bench.problems.ranges import COUNT, FINITE, SEED, UNIT, Checked, Range, setting
from rabo_bench.problems.registry import register_problem


@dataclass(frozen=True)
class LogisticConfig(Checked):
    dim: int = setting(5, COUNT)
    num_clients: int = setting(4, COUNT)
    train_samples: int = setting(40, COUNT)
    val_samples: int = setting(40, COUNT)
    heterogeneity: float = setting(0.5, UNIT)
    batch_size: int = setting(0, Range(0, integer=True))  # 0 = deterministic (full client data)
    log_lambda_init: float = setting(-1.0, FINITE)
    seed: int = setting(0, SEED)


def _logistic_loss(features: torch.Tensor, labels: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    z = features @ w
    return torch.mean(F.softplus(z) - labels * z)


class LogisticHyperProblem(BilevelProblem):
    """x = {"log_lambda": (dim,)}, y = {"w": (dim,)}. Client data are stacked tensors, (features
    (M, n, dim), labels (M, n)) per split, so clients can run under vmap."""

    newton_tol = 1e-13
    vectorisable = True

    def __init__(self, config: LogisticConfig | None = None, **overrides) -> None:
        cfg = config or LogisticConfig(**overrides)
        self.config = cfg
        self.num_clients = cfg.num_clients
        rng = torch.Generator().manual_seed(cfg.seed)
        dt, d, h = self.dtype, cfg.dim, cfg.heterogeneity
        w_true = torch.randn(d, generator=rng, dtype=dt) * 2

        def split(
            n: int, shift: torch.Tensor, w: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            a = torch.randn(n, d, generator=rng, dtype=dt) + shift
            labels = torch.bernoulli(torch.sigmoid(a @ w), generator=rng)
            return a, labels

        train, val = [], []
        for _ in range(cfg.num_clients):
            shift = h * torch.randn(d, generator=rng, dtype=dt)
            w_i = w_true + h * torch.randn(d, generator=rng, dtype=dt)
            train.append(split(cfg.train_samples, shift, w_i))
            val.append(split(cfg.val_samples, shift, w_i))
        self.train = tuple(torch.stack(parts) for parts in zip(*train, strict=True))
        self.val = tuple(torch.stack(parts) for parts in zip(*val, strict=True))

    def _rows(self, data: tuple[torch.Tensor, torch.Tensor], client, batch: Batch):
        return tuple(client_row(t, client, batch) for t in data)

    def _sample(self, n: int, rng: torch.Generator) -> Batch:
        if self.config.batch_size == 0:
            return None
        return torch.randint(n, (self.config.batch_size,), generator=rng)

    def sample_upper_batch(self, client: int, rng: torch.Generator) -> Batch:
        return self._sample(self.config.val_samples, rng)

    def sample_lower_batch(self, client: int, rng: torch.Generator) -> Batch:
        return self._sample(self.config.train_samples, rng)

    def init_params(self, rng: torch.Generator) -> tuple[Params, Params]:
        d = self.config.dim
        x = torch.full((d,), self.config.log_lambda_init, dtype=self.dtype)
        return {"log_lambda": x}, {"w": 0.1 * torch.randn(d, generator=rng, dtype=self.dtype)}

    def lower_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        w = y["w"]
        data = self._rows(self.train, client, batch)
        return _logistic_loss(*data, w) + 0.5 * torch.sum(torch.exp(x["log_lambda"]) * w**2)

    def upper_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        return _logistic_loss(*self._rows(self.val, client, batch), y["w"])

    # -- closed forms ------------------------------------------------------------------------
    def _inner_derivatives(self, lam: torch.Tensor, w: torch.Tensor):
        """Analytic gradient and Hessian of G(x, .) at w."""
        grad, hess = lam * w, torch.diag(lam)
        for a, labels in zip(*self.train, strict=True):
            p = torch.sigmoid(a @ w)
            grad = grad + a.T @ (p - labels) / (len(labels) * self.num_clients)
            hess = hess + (a.T * (p * (1 - p))) @ a / (len(labels) * self.num_clients)
        return grad, hess

    def inner_solution(self, x: Params) -> Params:
        lam = torch.exp(x["log_lambda"].detach())
        w = torch.zeros(self.config.dim, dtype=self.dtype)
        for _ in range(100):
            grad, hess = self._inner_derivatives(lam, w)
            step = torch.linalg.solve(hess, grad)
            w = w - step
            if step.norm() <= self.newton_tol * (1 + w.norm()):
                return {"w": w}
        raise RuntimeError("Newton's method did not converge on the logistic inner problem")

    def hypergradient(self, x: Params) -> Params:
        lam = torch.exp(x["log_lambda"].detach())
        w = self.inner_solution(x)["w"]
        grad_y = sum(
            v.T @ (torch.sigmoid(v @ w) - u) / len(u) for v, u in zip(*self.val, strict=True)
        )
        grad_y = grad_y / self.num_clients
        _, hess = self._inner_derivatives(lam, w)
        return {"log_lambda": -(lam * w) * torch.linalg.solve(hess, grad_y)}

    def evaluate(self, x: Params, y: Params) -> dict[str, float]:
        metrics = super().evaluate(x, y)
        metrics["grad_norm_sq"] = float(self.hypergradient(x)["log_lambda"].square().sum())
        metrics["inner_error"] = float((y["w"] - self.inner_solution(x)["w"]).norm())
        return metrics


register_problem("logistic", LogisticConfig, LogisticHyperProblem)
