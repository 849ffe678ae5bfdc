"""SimFBO (issue 19) against a hand-written reference of the updates specified in
docs/algorithms/simfbo.md, on a small deterministic quadratic in float64.

On the quadratic (problems/quadratic.py) every oracle is a matrix product:
    grad_y g_i = H_i y - B_i x - b_i,   d^2_yy g_i v = H_i v,   d^2_xy g_i v = -B_i^T v,
    grad_y f_i = P_i (y - c_i),         grad_x f_i = rho (x - a_i) - nu sin(x),
so the reference uses the problem's matrices and no autograd. Tolerance: a round is a few
hundred multiply-adds on O(1) numbers through contractions, so the two evaluation orders
differ by a few ulps (~1e-15) per round; 1e-12 is the issue's bound.
"""

from __future__ import annotations

import pytest
import torch

from rabo_bench.algorithms import Algorithm, get
from rabo_bench.baselines.simfbo import ServerStepOnX, project
from rabo_bench.cli import main
from rabo_bench.federated.inner import LocalSGD
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.federated.seeds import SeedBatch
from rabo_bench.problems import QuadraticBilevel
from tests.field_quadratic import (
    TOL,
    assert_refuses_per_task,
    quadratic,
    run_beside_reference,
)

TAU, ETA_Y, ETA_V, ETA_X, GAMMA_Y, GAMMA_V, GAMMA_X, RADIUS = 3, 0.3, 0.4, 0.2, 0.5, 0.6, 0.4, 0.3
SETTINGS = {
    "inner": {
        "steps": TAU, "lr": ETA_Y, "v_lr": ETA_V, "x_lr": ETA_X,
        "server_lr": GAMMA_Y, "v_server_lr": GAMMA_V, "radius": RADIUS,
    },
    "outer": {"lr": GAMMA_X},
}  # fmt: skip
STATE = "simultaneous_local_steps"  # the inner part's name: its entry in RoundContext.state


def simfbo(**inner) -> Algorithm:
    return get("simfbo", {**SETTINGS, "inner": {**SETTINGS["inner"], **inner}})


class Reference:
    """The specified round written with the problem's matrices."""

    def __init__(self, problem: QuadraticBilevel) -> None:
        self.p, self.m = problem, problem.num_clients
        self.rho, self.nu = problem.config.rho, problem.config.nu

    def directions(self, i, x, y, v):
        """(d_x, d_y, d_v) of client i at its local (x, y, v)."""
        p = self.p
        d_x = self.rho * (x - p.a[i]) - self.nu * torch.sin(x) + p.B[i].T @ v
        d_y = p.H[i] @ y - p.B[i] @ x - p.b[i]
        d_v = p.H[i] @ v - p.P[i] @ (y - p.c[i])
        return d_x, d_y, d_v

    def round(self, x, y, v):
        uploads = []
        for i in range(self.m):
            xk, yk, vk, total = x, y, v, [0, 0, 0]
            for _ in range(TAU):
                d = self.directions(i, xk, yk, vk)
                total = [t + e for t, e in zip(total, d, strict=True)]
                xk, yk, vk = xk - ETA_X * d[0], yk - ETA_Y * d[1], vk - ETA_V * d[2]
            uploads.append([t / TAU for t in total])
        h_x, h_y, h_v = (torch.stack(h).mean(0) for h in zip(*uploads, strict=True))
        v = v - GAMMA_V * h_v
        v = v * min(1.0, RADIUS / float(v.norm()))
        return x - GAMMA_X * h_x, y - GAMMA_Y * h_y, v


@pytest.mark.parametrize("rounds", [1, 3])
def test_rounds_equal_the_hand_written_reference(rounds):
    """The projection is active here (||v|| would exceed r = 0.3 every round), so it is
    checked too."""
    v0 = torch.zeros(4, dtype=torch.float64)
    run, (_, _, v) = run_beside_reference(simfbo(), Reference(quadratic()).round, rounds, v0)
    torch.testing.assert_close(run.state[STATE]["y"], v, rtol=TOL, atol=TOL)
    assert float(v.norm()) == pytest.approx(RADIUS, abs=1e-15)


def test_identical_clients_and_exact_oracles_reach_the_stationary_point_of_f():
    """Identical clients, gamma = tau eta for y and v and about that for x: a round is tau
    steps of the simultaneous method on (x, y, v), whose fixed point has grad_y g = 0,
    H v = grad_y f and grad_x f - d^2_xy g v = 0, i.e. y = y*(x), v = v*(x) and grad F(x) = 0
    (no truncation floor: v is an iterate, not a truncated series). mu_g = 1, L_g = 2,
    eta_y = eta_v = 1/L_g; ||grad F|| falls from 2.8 to 8e-10 in 15 rounds (measured on the
    matrix reference), linearly."""
    problem = QuadraticBilevel(
        dim_x=4, dim_y=4, num_clients=3, noise=0.0, heterogeneity=0.0,
        mu_g=1.0, L_g=2.0, rho=2.0, coupling=0.5, seed=1,
    )  # fmt: skip
    inner = {"steps": 3, "lr": 0.5, "v_lr": 0.5, "x_lr": 0.3, "server_lr": 1.5, "v_server_lr": 1.5}
    run = FederatedRun(
        problem, get("simfbo", {"inner": inner, "outer": {"lr": 0.8}}), [1.0] * 3, "c"
    )
    for _ in range(15):
        run.step()
    x, y = run.params
    y_star = problem.inner_solution(x)["y"]
    v_star = torch.linalg.solve(problem.H.mean(0), problem.P.mean(0) @ (y_star - problem.c.mean(0)))
    assert float(problem.hypergradient(x)["x"].norm()) <= 1e-8
    assert float((y["y"] - y_star).norm()) <= 1e-8
    assert float((run.state[STATE]["y"] - v_star).norm()) <= 1e-8


def test_cost_per_round_is_the_specified_one():
    """docs/algorithms/simfbo.md, "Cost per round", per client, with d_x = 3, d_y = 4: tau of
    each oracle, x, y and v down, their three directions up, one exchange."""
    ledger = FederatedRun(quadratic(), simfbo(), [1.0] * 3, "cost").step().ledger
    calls = {"grad_f": TAU, "grad_g": TAU, "hvp": TAU, "jvp": TAU}
    assert [c.as_dict() for c in ledger.counters] == [calls] * 3
    assert ledger.params_down == [3 + 2 * 4] * 3 and ledger.params_up == [3 + 2 * 4] * 3


def test_v_is_carried_between_rounds_and_a_run_resumed_with_it_continues_identically():
    """What a checkpoint holds (x, y, round, the carried state) continues the run exactly;
    without the carried v it does not, so the resume test (tests/integration/test_resume.py)
    checks the state."""
    problem, algorithm = quadratic(noise=0.3), simfbo(radius=100.0, steps=1)
    whole, partial = (FederatedRun(problem, algorithm, [1.0] * 3, "resume") for _ in range(2))
    for _ in range(3):
        whole.step()
    partial.step()
    partial.step()
    for keep in (True, False):
        resumed = FederatedRun(problem, algorithm, [1.0] * 3, "resume")
        resumed.x, resumed.y, resumed.round = partial.x, partial.y, partial.round
        resumed.state = partial.state if keep else {}
        resumed.step()
        assert torch.equal(resumed.x["x"], whole.x["x"]) is keep
        assert torch.equal(resumed.state[STATE]["y"], whole.state[STATE]["y"]) is keep


def test_a_seed_batch_equals_the_sequential_runs():
    """A seed batch of two runs, a round of the vectorised simulator (v uploaded as a y-shaped
    key, stacked per run in the carried state, projected with each run's own norm), reproduces
    the runs alone with the sequential simulator to 1e-10 (float64), noisy quadratic, the
    projection active, with the same oracle counts and messages."""
    problem, algorithm = quadratic(noise=0.3), simfbo()
    alone, batched = (
        [FederatedRun(problem, algorithm, [1.0] * 3, f"s{s}") for s in (0, 1)] for _ in range(2)
    )
    batch = SeedBatch(batched)
    for _ in range(2):
        expected, got = [run.step() for run in alone], batch.step()
        for a, b in zip(expected, got, strict=True):
            assert [c.as_dict() for c in a.ledger.counters] == [
                c.as_dict() for c in b.ledger.counters
            ]
            assert (a.ledger.params_down, a.ledger.params_up) == (
                b.ledger.params_down,
                b.ledger.params_up,
            )
    for a, b in zip(alone, batched, strict=True):
        for one, other in ((a.x, b.x), (a.y, b.y), (a.state[STATE], b.state[STATE])):
            torch.testing.assert_close(other, one, rtol=0, atol=1e-10)
        assert float(b.state[STATE]["y"].norm()) == pytest.approx(RADIUS)


def test_projection_onto_the_ball_one_run_and_per_run_in_a_seed_batch():
    v = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor(4.0)}  # ||v|| = 5
    torch.testing.assert_close(
        project(v, 1.0), {"a": torch.tensor([0.6, 0.0]), "b": torch.tensor(0.8)}
    )
    assert all(torch.equal(project(v, 5.0)[n], v[n]) for n in v)  # on the ball: unchanged
    stacked = {"a": torch.tensor([[3.0, 0.0], [0.3, 0.0]]), "b": torch.tensor([4.0, 0.4])}
    got = project(stacked, 1.0, seeds=2)  # run 0 is projected, run 1 (norm 0.5) is not
    torch.testing.assert_close(got["a"], torch.tensor([[0.6, 0.0], [0.3, 0.0]]))
    torch.testing.assert_close(got["b"], torch.tensor([0.8, 0.4]))
    zero = {"a": torch.zeros(2)}
    assert torch.equal(project(zero, 1.0)["a"], zero["a"])


def test_simfbo_refuses_a_problem_with_an_inner_problem_per_task():
    """Its y and v are those of one global lower problem (spec, "Problems it runs on")."""
    assert_refuses_per_task("simfbo", r"simultaneous_local_steps \(SimFBO\) needs one global")


def test_the_server_step_on_x_needs_the_directions_of_simfbos_inner_phase():
    algorithm = Algorithm("odd", "", get("simfbo").policy, LocalSGD(steps=1), ServerStepOnX())
    with pytest.raises(ValueError, match="did not hand over"):
        FederatedRun(quadratic(), algorithm, [1.0] * 3, "odd").step()


def test_rabo_bench_list_names_it_with_its_source(capsys):
    assert main(["list"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.split()[:1] == ["simfbo"]]
    assert "Yang, Xiao, Ji, NeurIPS 2023" in line and "no public code found" in line


def test_it_is_a_bilevel_method_of_full_models():
    algorithm = get("simfbo")
    assert algorithm.bilevel and algorithm.policy.name == "full"
