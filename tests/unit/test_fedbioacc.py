"""FedBiOAcc (issue 19) against a hand-written reference of the updates specified in
docs/algorithms/fedbioacc.md, on a small deterministic quadratic in float64.

On the quadratic (problems/quadratic.py) every oracle is a matrix product:
    grad_y g_i = H_i y - B_i x - b_i,   d^2_yy g_i u = H_i u,   d^2_xy g_i u = -B_i^T u,
    grad_y f_i = P_i (y - c_i),         grad_x f_i = rho (x - a_i) - nu sin(x),
so the reference uses the problem's matrices and no autograd. Tolerance: a round is a few
hundred multiply-adds on O(1) numbers through contractions, so the two evaluation orders differ
by a few ulps per round; 1e-12 is the issue's bound.
"""

from __future__ import annotations

import pytest
import torch

from rabo_bench.algorithms import get
from rabo_bench.cli import main
from rabo_bench.engine.checkpoint import Checkpoint, RunState
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.federated.seeds import SeedBatch
from rabo_bench.problems import QuadraticBilevel
from tests.field_quadratic import (
    TOL,
    assert_refuses_per_task,
    quadratic,
    run_beside_reference,
)

STEPS, GAMMA, C_OMEGA = 3, 0.3, 0.8
ETA, C_NU, TAU, C_U, DELTA, OFFSET = 0.2, 0.5, 0.25, 0.9, 1.1, 2.0
SETTINGS = {
    "inner": {"steps": STEPS, "lr": GAMMA, "momentum": C_OMEGA},
    "outer": {"lr": ETA, "momentum": C_NU, "u_lr": TAU, "u_momentum": C_U,
              "delta": DELTA, "offset": OFFSET},
}  # fmt: skip


class Reference:
    """The specified round written with the problem's matrices; ``state`` is what the server
    carries: the step counter t, then the means of u, nu, omega and q."""

    def __init__(self, problem: QuadraticBilevel) -> None:
        self.p, self.m = problem, problem.num_clients
        self.rho, self.nu = problem.config.rho, problem.config.nu
        self.state: dict = {"t": 0}

    def directions(self, i, x, y, u):
        """(nu, omega, q) of client i at (x, y, u)."""
        p = self.p
        grad_x_f = self.rho * (x - p.a[i]) - self.nu * torch.sin(x)
        grad_y_f = p.P[i] @ (y - p.c[i])
        return (
            grad_x_f + p.B[i].T @ u,
            p.H[i] @ y - p.B[i] @ x - p.b[i],
            p.H[i] @ u - grad_y_f,
        )

    def round(self, x, y):
        t, ends = self.state["t"], []
        for i in range(self.m):
            if t == 0:
                u = torch.zeros_like(y)
                nu, omega, q = self.directions(i, x, y, u)
            else:
                u, nu, omega, q = (self.state[k] for k in ("u", "nu", "omega", "q"))
            xi, yi = x, y
            for k in range(STEPS):
                a = DELTA / (OFFSET + t + k) ** (1 / 3)
                x1, y1, u1 = xi - ETA * a * nu, yi - GAMMA * a * omega, u - TAU * a * q
                new, old = self.directions(i, x1, y1, u1), self.directions(i, xi, yi, u)
                nu = new[0] + (1 - C_NU * a**2) * (nu - old[0])
                omega = new[1] + (1 - C_OMEGA * a**2) * (omega - old[1])
                q = new[2] + (1 - C_U * a**2) * (q - old[2])
                xi, yi, u = x1, y1, u1
            ends.append((xi, yi, u, nu, omega, q))
        x, y, u, nu, omega, q = (torch.stack(v).mean(0) for v in zip(*ends, strict=True))
        self.state = {"t": t + STEPS, "u": u, "nu": nu, "omega": omega, "q": q}
        return x, y


@pytest.mark.parametrize("rounds", [1, 3])
def test_rounds_equal_the_hand_written_reference(rounds):
    reference = Reference(quadratic())
    run, _ = run_beside_reference(get("fedbioacc", SETTINGS), reference.round, rounds)
    carried = run.state["storm_hypergradient"]
    assert carried["step"] == reference.state["t"] == rounds * STEPS
    for key, side in (("u", "y"), ("omega", "y"), ("q", "y"), ("nu", "x")):
        torch.testing.assert_close(carried[key][side], reference.state[key], rtol=TOL, atol=TOL)


def test_cost_per_round_is_the_specified_one():
    """docs/algorithms/fedbioacc.md, "Cost per round", per client, with d_x = 3, d_y = 4: the
    first round computes the first estimators too and receives only x and y."""
    dx, dy = 3, 4
    run = FederatedRun(quadratic(), get("fedbioacc", SETTINGS), [1.0] * 3, "cost")
    for first in (True, False):
        ledger = run.step().ledger
        calls = 2 * STEPS + first
        assert [c.as_dict() for c in ledger.counters] == [dict.fromkeys(ORACLES, calls)] * 3
        assert ledger.params_down == [dx + dy if first else 2 * dx + 4 * dy] * 3
        assert ledger.params_up == [2 * dx + 4 * dy] * 3


ORACLES = ("grad_f", "grad_g", "hvp", "jvp")


def test_identical_clients_and_exact_oracles_reach_the_stationary_point_of_f():
    """Identical clients, noise 0: every estimator is the exact global direction (the STORM
    correction m - d(z) is zero), so a round is I steps of the deterministic single loop on
    (x, y, u), a linear map whose only fixed point has y = y*(x), u = H^{-1} grad_y f and
    grad F(x) = 0. On this problem (mu_g = 1, L_g = 2, rho = 2, nu = 0) its spectral radius at
    eta = 0.25, gamma = 0.5, tau = 0.6 is 0.58 per step (computed from its Jacobian; the best
    of a grid), and a slow schedule (delta = 100, u0 = 1e6) keeps a_t at 1 to 1e-4, so 10
    rounds of 5 steps take ||grad F|| from 3.8 to 1.5e-12 (measured)."""
    problem = QuadraticBilevel(
        dim_x=3, dim_y=3, num_clients=3, noise=0.0, heterogeneity=0.0,
        mu_g=1.0, L_g=2.0, rho=2.0, seed=3,
    )  # fmt: skip
    overrides = {
        "inner": {"steps": 5, "lr": 0.5},
        "outer": {"lr": 0.25, "u_lr": 0.6, "delta": 100.0, "offset": 1e6},
    }
    run = FederatedRun(problem, get("fedbioacc", overrides), [1.0] * 3, "converge")
    start = float(problem.hypergradient(run.params[0])["x"].norm())
    for _ in range(10):
        run.step()
    x, y = run.params
    assert start > 1 and float(problem.hypergradient(x)["x"].norm()) < 1e-9
    assert float((y["y"] - problem.inner_solution(x)["y"]).norm()) < 1e-9


def test_a_seed_batch_equals_the_runs_alone():
    """Noisy clients, one local step a round: a seed batch (one round of the vectorised
    simulator for both runs, the carried state stacked per run) reproduces each run alone
    (sequential) to 1e-10, with the same counts and messages, its carried state included."""
    problem = quadratic(noise=0.3)
    algorithm = get("fedbioacc", {**SETTINGS, "inner": {**SETTINGS["inner"], "steps": 1}})
    alone, batched = (
        [FederatedRun(problem, algorithm, [1.0] * 3, f"s{k}", "sequential") for k in range(2)]
        for _ in range(2)
    )
    batch = SeedBatch(batched)
    for _ in range(2):  # the second round starts from the carried state
        for report, other in zip([run.step() for run in alone], batch.step(), strict=True):
            assert [c.as_dict() for c in report.ledger.counters] == [
                c.as_dict() for c in other.ledger.counters
            ]
            assert report.ledger.params_down == other.ledger.params_down
    for run, other in zip(alone, batched, strict=True):
        for mine, theirs in zip(run.params, other.params, strict=True):
            for name in mine:
                torch.testing.assert_close(theirs[name], mine[name], rtol=0, atol=1e-10)
        mine, theirs = (r.state["storm_hypergradient"] for r in (run, other))
        assert theirs["step"] == mine["step"] == 2
        torch.testing.assert_close(theirs["nu"]["x"], mine["nu"]["x"], rtol=0, atol=1e-10)


def test_a_run_resumed_from_a_mid_run_checkpoint_continues_exactly(tmp_path):
    """The carried state (u, the averaged estimators, the step counter) goes through a
    checkpoint file (read back with weights_only, as the runner does) and a run resumed from
    it after round 2 reaches round 3's x, y, state and ledger bit for bit; the whole runner's
    resume is tests/integration/test_resume.py."""
    problem, algorithm = quadratic(noise=0.3), get("fedbioacc", SETTINGS)

    def fresh():
        return FederatedRun(problem, algorithm, [1.0] * 3, "resume", "sequential")

    whole, killed, resumed = fresh(), fresh(), fresh()
    reports = [whole.step() for _ in range(3)]
    killed.step(), killed.step()
    checkpoint = Checkpoint(tmp_path / "run.pt")
    checkpoint.save(RunState(killed.round, killed.x, killed.y, {}, [], None, killed.state))
    saved = checkpoint.load()
    assert saved.carried["storm_hypergradient"]["step"] == 2 * STEPS
    resumed.x, resumed.y, resumed.round = saved.x, saved.y, saved.round
    resumed.state = saved.carried
    report = resumed.step()
    assert resumed.round == whole.round == 3
    for mine, theirs in zip(whole.params, resumed.params, strict=True):
        assert all(torch.equal(mine[name], theirs[name]) for name in mine)
    mine, theirs = (run.state["storm_hypergradient"] for run in (whole, resumed))
    assert mine["step"] == theirs["step"] == 3 * STEPS
    for key, side in (("u", "y"), ("nu", "x"), ("omega", "y"), ("q", "y")):
        assert torch.equal(mine[key][side], theirs[key][side])
    assert report.ledger == reports[-1].ledger


def test_it_refuses_a_problem_with_an_inner_problem_per_task_and_sub_models():
    assert_refuses_per_task("fedbioacc", r"\(FedBiOAcc\) needs one global inner problem")
    sub_models = get("fedbioacc", {"policy": {"type": "static_prefix"}})
    run = FederatedRun(quadratic(), sub_models, [1.0, 0.5, 0.5], "masks")
    with pytest.raises(ValueError, match=r"\(FedBiOAcc\) needs full-model masks"):
        run.step()


def test_a_momentum_weight_outside_zero_one_is_refused():
    """1 - c a_0^2 < 0 for c = 2 at a_0 = 1: the STORM weight must lie in [0, 1]."""
    run = FederatedRun(quadratic(), get("fedbioacc", {"outer": {"momentum": 2.0}}), [1.0] * 3, "c")
    with pytest.raises(ValueError, match=r"outer.momentum c = 2 gives c a_0\^2 = 2 > 1"):
        run.step()


def test_rabo_bench_list_names_it_with_its_sources(capsys):
    assert main(["list"]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.split()[:1] == ["fedbioacc"]]
    assert "Li, Huang, Huang, NeurIPS 2023" in line and "2302.06701" in line
