"""Inner steps on features computed once (issue 15 item 4), float64, on a tiny Conv-4.

The few-shot lower loss is a head on backbone features, g(x, y; b) = CE(head_y(phi_x(b))) +
reg/2 ||y||^2 (``head_on_features``), so a run of inner steps at a held x computes phi_x of each
distinct batch once (``LocalObjective.lower_in_y``). The reference is the per-step path the
harness took before: every step evaluates g whole (a backbone forward per step).

Tolerances: the counted steps run the same operations on the same feature values as the
per-step path, so they are compared bit for bit. The unrolled steps' derivative in x sums the
steps' feature cotangents before one backbone backward instead of one backward per step, a
reordering of float64 sums of O(1) terms over a few hundred pixels: ~1e-15 relative, checked at
1e-12. RAFBO's vmapped perturbed runs against a Python loop over its coordinates: the same
operations per coordinate, differenced and divided by mu = 1e-2, so round-off ~ 1e-16 / 1e-2:
atol 1e-12.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from rabo_bench.federated.policies import ChannelImportance
from rabo_bench.hypergrad import LocalObjective, Oracles, make_estimator
from rabo_bench.problems.fewshot import FewShotConfig, FewShotProblem

STEPS, LR = 4, 0.3


class Float64FewShot(FewShotProblem):
    """The problem in float64, counting its feature computations."""

    dtype = torch.float64

    def __init__(self, config: FewShotConfig) -> None:
        super().__init__(config)
        self._train = self._train.double()
        self.feature_calls = 0

    def lower_features(self, client, x, batch):
        self.feature_calls += 1
        return super().lower_features(client, x, batch)


@pytest.fixture(scope="module", params=["episode", "global"])
def problem(root, request) -> Float64FewShot:
    config = FewShotConfig(ways=3, shots=2, num_clients=2, width=4, reading=request.param)
    return Float64FewShot(config)


def _objective(problem, capacity: float, seed: int):
    """Client 0's objective (a narrow sub-model below capacity 1), its first task (the
    objective itself in the ``global`` reading), flat (x, y) with random norm parameters, and
    STEPS lower batches: the task's support set every time, or fresh batches (``global``)."""
    gen = torch.Generator().manual_seed(seed)
    x, y = problem.init_params(gen)
    for name, t in x.items():
        if ".norm." in name:
            x[name] = t + 0.3 * torch.randn(t.shape, generator=gen, dtype=t.dtype)
    masks = ChannelImportance().assign(x, y, [capacity], 0, gen, problem.channel_layers(x, y))
    objective = LocalObjective(problem, 0, x, y, masks[0].x, masks[0].y)
    task = objective.tasks(gen)[0]
    batches = [task.sample_g(gen) for _ in range(STEPS)]
    return task, objective.pack_x(x), objective.pack_y(y), batches


def _per_step(task, x, y, batches):
    """The reference: each step's gradient of g evaluated whole (torch.func, x traced)."""
    for batch in batches:
        y = y - LR * grad(task.g, argnums=1)(x, y, batch)
    return y


@pytest.mark.parametrize(("capacity", "seed"), [(1.0, 0), (0.5, 1)])
def test_counted_inner_steps_on_cached_features_equal_the_per_step_path(problem, capacity, seed):
    task, x, y, batches = _objective(problem, capacity, seed)
    reference = y
    for batch in batches:
        leaf = reference.detach().requires_grad_(True)
        step = torch.autograd.grad(task.g(x.detach(), leaf, batch), leaf)[0]
        reference = reference - LR * step
    oracles = Oracles(task)
    problem.feature_calls = 0
    moved = oracles.inner_steps(x, y, LR, batches)
    assert torch.equal(moved, reference)
    assert oracles.counter.as_dict() == {"grad_f": 0, "grad_g": STEPS, "hvp": 0, "jvp": 0}
    # once per distinct batch: the episode's support set, or each fresh global batch
    assert problem.feature_calls == (1 if problem.per_task_inner else STEPS)


@pytest.mark.parametrize(("capacity", "seed"), [(1.0, 2), (0.5, 3)])
def test_unrolled_steps_on_cached_features_equal_the_per_step_path_and_its_x_derivative(
    problem, capacity, seed
):
    task, x, y, batches = _objective(problem, capacity, seed)
    oracles = Oracles(task)
    torch.testing.assert_close(
        oracles.inner_steps_uncounted(x, y, LR, batches),
        _per_step(task, x, y, batches),
        rtol=0,
        atol=1e-12,
    )
    v = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)

    def projected(unroll):
        return lambda xx: unroll(xx) @ v

    cached = grad(projected(lambda xx: oracles.inner_steps_uncounted(xx, y, LR, batches)))(x)
    per_step = grad(projected(lambda xx: _per_step(task, xx, y, batches)))(x)
    assert per_step.abs().max() > 0
    torch.testing.assert_close(cached, per_step, rtol=1e-12, atol=1e-12)
    assert oracles.counter.total == 0


@pytest.mark.parametrize(("coordinates", "steps", "capacity"), [(None, 1, 0.25), (5, 3, 0.5)])
def test_rafbo_perturbed_runs_in_one_vmapped_call_equal_a_loop_over_coordinates(
    problem, coordinates, steps, capacity
):
    """coordinate_fd (RAFBO, eq. 10) runs its |S| perturbed inner runs as one vmap call; a
    Python loop over the same coordinates, each run on the per-step path, gives the same h
    (every coordinate on the quarter-width sub-model: the loop's cost grows with d)."""
    task, x, y, _ = _objective(problem, capacity, 4)
    settings = {"steps": steps, "lr": LR, "mu": 1e-2, "coordinates": coordinates}
    oracles = Oracles(task)
    estimate = make_estimator("coordinate_fd", **settings)(
        oracles, x, y, torch.Generator().manual_seed(5)
    )

    rng = torch.Generator().manual_seed(5)  # the estimator's draws, in its order
    d = x.numel()
    chosen, scale = torch.arange(d), 1.0
    if coordinates is not None:
        chosen, scale = torch.randperm(d, generator=rng)[:coordinates], d / coordinates
    batches = [task.sample_g(rng) for _ in range(steps)]
    y_end = _per_step(task, x, y, batches)
    grad_x, grad_y = grad(task.f, argnums=(0, 1))(x, y_end, task.sample_f(rng))
    reference = grad_x.clone()
    for j in chosen.tolist():
        shifted = x.clone()
        shifted[j] += settings["mu"]
        delta = (_per_step(task, shifted, y, batches) - y_end) / settings["mu"]
        reference[j] += scale * (delta @ grad_y)
    torch.testing.assert_close(estimate, reference, rtol=0, atol=1e-12)
    expected = {"grad_f": 1, "grad_g": steps * (len(chosen) + 1), "hvp": 0, "jvp": 0}
    assert oracles.counter.as_dict() == expected
