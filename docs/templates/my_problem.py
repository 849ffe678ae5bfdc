"""Template: a new federated bilevel problem (docs/extending.md).

Federated ridge regression with one learned regularisation weight per feature, a small
hyperparameter-tuning problem with closed forms. Client i holds a training split (A_i, t_i)
and a validation split (V_i, u_i); x = log(lambda), y = w:

    g_i(x, w) = 1/2 mean_s (a_s^T w - t_s)^2 + 1/2 sum_k exp(x_k) w_k^2     (strongly convex)
    f_i(x, w) = 1/2 mean_s (v_s^T w - u_s)^2                              (validation loss)

To use it, copy this file to ``rabo_bench/problems/<your_problem>.py``: the package's modules
are discovered, and the ``register_problem`` call at the end makes it a suite problem. A suite
then names it (``[problem] name = "my_ridge"``, any config field as a key), and every
registered algorithm runs on it: algorithms never know which problem they run. Problems that
read data files also pass ``archives=`` to ``register_problem`` (see docs/data.md).

``tests/integration/test_templates.py`` checks the closed forms below against autograd and
runs a suite on this problem, so the template stays true.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rabo_bench.params import Params
from rabo_bench.problems.base import Batch, BilevelProblem, client_row
from rabo_bench.problems.ranges import COUNT, NON_NEGATIVE, SEED, Checked, Range, setting
from rabo_bench.problems.registry import register_problem


# The config is a frozen dataclass: each field is a suite key under [problem], checked for its
# type (int, float, bool) by the suite loader; ``seed`` draws the problem INSTANCE (its data),
# not the run (the run seed draws the initial point and every sampling stream).
# Each field declares its allowed values (rabo_bench/problems/ranges.py), checked by Checked
# when the config is built: a suite value outside them is one line naming the key and range.
@dataclass(frozen=True)
class RidgeConfig(Checked):
    dim: int = setting(6, COUNT)
    num_clients: int = setting(4, COUNT)  # a suite gives one capacity per client
    samples: int = setting(32, COUNT)
    batch_size: int = setting(8, Range(0, integer=True))  # 0 = the full data (deterministic)
    heterogeneity: float = setting(0.5, NON_NEGATIVE)
    seed: int = setting(0, SEED)

    def __post_init__(self) -> None:
        super().__post_init__()  # the declared ranges first
        # what compares two fields stays here; a ValueError becomes one line of the suite error
        if self.batch_size > self.samples:
            raise ValueError(f"batch_size must be <= samples, got {self.batch_size}")


class RidgeProblem(BilevelProblem):
    """x = {"log_lambda": (dim,)}, y = {"w": (dim,)}; named tensors, as ``torch.func`` takes."""

    # Client data are stacked tensors (M, n, ...) picked with ``client_row``, which also takes a
    # batched client index: so the vectorised simulator may run the clients under vmap.
    vectorisable = True
    # Other class flags (see problems/base.py): physical_submodels (losses accept the narrow
    # tensors of a structured sub-model), reports_accuracy, per_task_inner (few-shot episodes).

    def __init__(self, config: RidgeConfig | None = None, **overrides) -> None:
        cfg = config or RidgeConfig(**overrides)
        self.config, self.num_clients = cfg, cfg.num_clients
        rng = torch.Generator().manual_seed(cfg.seed)  # the instance's own stream
        m, n, d, dt = cfg.num_clients, cfg.samples, cfg.dim, self.dtype  # float64 by default
        w_true = torch.randn(d, generator=rng, dtype=dt)
        shift = cfg.heterogeneity * torch.randn(m, 1, d, generator=rng, dtype=dt)

        def split() -> tuple[torch.Tensor, torch.Tensor]:
            features = torch.randn(m, n, d, generator=rng, dtype=dt) + shift
            targets = features @ w_true + 0.5 * torch.randn(m, n, generator=rng, dtype=dt)
            return features, targets

        (self.A, self.t), (self.V, self.u) = split(), split()

    # -- batches: drawn from the generator the engine passes (never a global RNG) -----------
    def _sample(self, rng: torch.Generator) -> Batch:
        if self.config.batch_size == 0:
            return None  # None = the client's full data, i.e. f_i and g_i themselves
        return torch.randint(self.config.samples, (self.config.batch_size,), generator=rng)

    def sample_upper_batch(self, client: int, rng: torch.Generator) -> Batch:
        return self._sample(rng)

    def sample_lower_batch(self, client: int, rng: torch.Generator) -> Batch:
        return self._sample(rng)

    # -- the maths ---------------------------------------------------------------------------
    def init_params(self, rng: torch.Generator) -> tuple[Params, Params]:
        x = torch.zeros(self.config.dim, dtype=self.dtype)  # lambda = 1 for every feature
        y = 0.1 * torch.randn(self.config.dim, generator=rng, dtype=self.dtype)
        return {"log_lambda": x}, {"w": y}

    def lower_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        residual = client_row(self.A, client, batch) @ y["w"] - client_row(self.t, client, batch)
        ridge = torch.sum(torch.exp(x["log_lambda"]) * y["w"] ** 2)
        return 0.5 * residual.square().mean() + 0.5 * ridge

    def upper_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        residual = client_row(self.V, client, batch) @ y["w"] - client_row(self.u, client, batch)
        return 0.5 * residual.square().mean()

    # -- closed forms (optional): written without autograd, an independent reference --------
    def _hessian(self, x: Params) -> torch.Tensor:
        """d^2_yy G = mean_i A_i^T A_i / n + diag(exp(x)), the same for every y."""
        gram = torch.einsum("mni,mnj->ij", self.A, self.A) / (self.num_clients * self.A.shape[1])
        return gram + torch.diag(torch.exp(x["log_lambda"].detach()))

    def inner_solution(self, x: Params) -> Params:
        """y*(x) = (d^2_yy G)^{-1} mean_i A_i^T t_i / n."""
        rhs = torch.einsum("mni,mn->i", self.A, self.t) / (self.num_clients * self.A.shape[1])
        return {"w": torch.linalg.solve(self._hessian(x), rhs)}

    def hypergradient(self, x: Params) -> Params:
        """grad F(x) = -(d^2_xy G)^T (d^2_yy G)^{-1} grad_y F at y*(x) (SPEC eq. 9; f does not
        depend on x), with d^2_xy G = diag(exp(x) * y*)."""
        w = self.inner_solution(x)["w"]
        residual = self.V @ w - self.u  # (M, n)
        grad_y = torch.einsum("mni,mn->i", self.V, residual) / residual.numel()
        scale = torch.exp(x["log_lambda"].detach()) * w
        return {"log_lambda": -scale * torch.linalg.solve(self._hessian(x), grad_y)}

    def evaluate(self, x: Params, y: Params) -> dict[str, float]:
        """The results table's metrics; with closed forms, the exact ||grad F||^2 and
        ||y - y*(x)|| (columns grad_norm_sq, inner_error) beside the upper loss."""
        metrics = super().evaluate(x, y)
        metrics["grad_norm_sq"] = float(self.hypergradient(x)["log_lambda"].square().sum())
        metrics["inner_error"] = float((y["w"] - self.inner_solution(x)["w"]).norm())
        return metrics


# The suite name and the config and problem classes (``archives=lambda config: (...)`` names the
# data files a problem reads from the data root).
register_problem("my_ridge", RidgeConfig, RidgeProblem)
