"""Products through one kept graph of grad_y g (``Oracles.linearise``) against the closed forms
of the quadratic (d^2_yy g = H, d^2_xy g = -B^T), and bit for bit against a graph per product."""

from __future__ import annotations

import torch
from hypothesis import given

from rabo_bench.hypergrad import LocalObjective, Oracles, make_estimator
from rabo_bench.hypergrad.implicit import ClientSystem
from rabo_bench.hypergrad.oracles import FunctionalOracles
from tests.strategies import global_view, quadratic_problems, seeds


def _client(problem, seed: int):
    x, y = problem.init_params(torch.Generator().manual_seed(seed))
    obj = LocalObjective(problem, 0, x, y)
    return obj, obj.pack_x(x), obj.pack_y(y)


@given(quadratic_problems(noise=True), seeds)
def test_every_product_of_one_graph_is_a_fresh_graphs_and_counts_once(problem, seed):
    obj, x, y = _client(problem, seed)
    oracles, batch = Oracles(obj), obj.sample_g(torch.Generator().manual_seed(seed))
    graph = oracles.linearise(x, y, batch)
    vectors = torch.randn(3, len(y), generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    for v in vectors:  # the graph is kept: each product can be taken again, in any order
        assert torch.equal(graph.hvp(v), oracles.hvp(x, y, v, batch))
        assert torch.equal(graph.mixed(v), oracles.mixed(x, y, v, batch))
    assert (oracles.counter.hvp, oracles.counter.jvp, oracles.counter.grad_g) == (6, 6, 0)


@given(quadratic_problems(), seeds)
def test_products_are_the_closed_form_blocks(problem, seed):
    obj, x, y, _ = global_view(problem, seed)
    v = torch.randn(len(y), generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    for oracles in (Oracles(obj), FunctionalOracles(obj)):
        products = oracles.linearise(x, y, obj.sample_g(None))
        hess, cross = problem.H.mean(0), problem.B.mean(0)
        torch.testing.assert_close(products.hvp(v), hess @ v, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(products.mixed(v), -cross.T @ v, rtol=1e-12, atol=1e-12)


@given(quadratic_problems(), quadratic_problems(noise=True), seeds)
def test_a_system_shares_a_graph_only_between_batches_of_the_same_data(exact, noisy, seed):
    """Noise-free lower batches are None every time; noisy ones are fresh draws."""
    for problem, shared in ((exact, True), (noisy, False)):
        obj, x, y = _client(problem, seed)
        system = ClientSystem(Oracles(obj), x, y, torch.Generator().manual_seed(seed))
        assert (system.linearise() is system.linearise()) == shared


@given(quadratic_problems(), seeds)
def test_exact_takes_the_cross_term_as_one_product(problem, seed):
    obj, x, y, _ = global_view(problem, seed)
    oracles = Oracles(obj)
    make_estimator("exact")(oracles, x, y, torch.Generator().manual_seed(seed))
    assert (oracles.counter.grad_f, oracles.counter.hvp, oracles.counter.jvp) == (1, len(y), 1)
