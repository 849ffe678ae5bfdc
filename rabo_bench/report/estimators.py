"""``make estimators``: the hypergradient estimators against closed forms on two problems.

``sampled_neumann`` is left out: on one objective (here the global one) it is ``neumann``.

Prints one table (relative error to grad F, oracle calls, wall time per estimator setting) and
writes it as markdown to ``out/estimators/estimators.md`` under the working directory (the
project root for ``make estimators``). Seconds on a laptop CPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import torch

from rabo_bench.hypergrad.compare import Setting, compare_estimators, to_markdown, to_text
from rabo_bench.problems import LogisticHyperProblem, QuadraticBilevel

SEED = 0
OUT_DIR = Path("out") / "estimators"


def logistic_inner_lr(problem: LogisticHyperProblem) -> float:
    """1 / L with L = ||mean_i A_i^T A_i / n_i|| / 4 + max_k exp(x_k) at the initial x
    (every x_k = ``log_lambda_init``).

    L bounds d^2_yy G everywhere (softplus'' <= 1/4), so gradient descent with this step size
    converges on the inner problem. x stays at its initial value here.
    """
    gram = sum(a.T @ a / len(a) for a in problem.train[0]) / problem.num_clients
    lam_max = torch.exp(torch.tensor(problem.config.log_lambda_init))
    return float(1 / (torch.linalg.matrix_norm(gram, ord=2) / 4 + lam_max))


def estimator_settings(step: float, dim_x: int) -> list[Setting]:
    """The cost sweep; ``step`` = 1 / L_g is both the Neumann eta and the inner lr."""
    unrolled = {"lr": step}
    fd = {"lr": step, "mu": 1e-4}
    return [
        Setting("exact"),
        *(Setting("neumann", {"terms": n, "eta": step}) for n in (5, 20, 80)),
        *(Setting("cg", {"iterations": k}) for k in (2, 5, 20)),
        *(Setting("itd", {"steps": k, **unrolled}) for k in (5, 20, 80)),
        *(Setting("coordinate_fd", {"steps": k, **fd}) for k in (5, 20, 80)),
        Setting("coordinate_fd", {"steps": 80, **fd, "coordinates": dim_x // 2}),
        *(Setting("gaussian_zo", {"steps": 80, **unrolled, "directions": q}) for q in (10, 100)),
    ]


def run() -> tuple[pd.DataFrame, dict[str, float]]:
    """The comparison table on the quadratic and the logistic problem, and each one's step."""
    quadratic = QuadraticBilevel(
        dim_x=20, dim_y=20, num_clients=10, mu_g=0.5, L_g=2.0, nu=0.5, heterogeneity=0.5
    )
    logistic = LogisticHyperProblem(dim=10, num_clients=5)
    cases = {
        "quadratic": (quadratic, 1 / quadratic.L_g, 20),
        "logistic": (logistic, logistic_inner_lr(logistic), 10),
    }
    frames = []
    for name, (problem, step, dim_x) in cases.items():
        frame = compare_estimators(problem, estimator_settings(step, dim_x), SEED)
        frame.insert(0, "problem", name)
        frames.append(frame)
    steps = {name: step for name, (_, step, _) in cases.items()}
    return pd.concat(frames, ignore_index=True), steps


def main(out_dir: Path = OUT_DIR) -> None:
    # torch's first forward-mode AD call scripts its decompositions and warns about
    # torch.jit.script's deprecation; that is torch-internal (pyproject filters it in tests too).
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    table, steps = run()
    print(
        "Hypergradient estimators vs the closed-form grad F(x), float64, seed 0.\n"
        "start: implicit estimators (exact, neumann, cg) at y*(x); unrolled ones (itd,\n"
        "coordinate_fd, gaussian_zo) run their inner steps from the problem's initial y (y0).\n"
        "Neumann eta = unrolled lr = 1/L_g: quadratic 1/2, logistic 1/(||mean_i A_i^T A_i/n_i||/4"
        f" + max exp(x)) = {steps['logistic']:.4g}.\n"
    )
    print(to_text(table))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "estimators.md"
    path.write_text(to_markdown(table))
    print(f"markdown table written to {path}")


if __name__ == "__main__":
    main()
