"""Every estimator on a client's masked sub-model (SPEC eq. 2, 4, 7) touches only its coordinates.

Reference: the client's quadratic restricted to kept rows T of x and S of y, evaluated at the
embedded point x ⊙ m_x, y ⊙ m_y, in closed form by sub-matrices:

    y_S* = H_SS^{-1} (B_ST x_T + b_S),   h_T = [grad_x f]_T + B_ST^T H_SS^{-1} [grad_y f]_S.
"""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from rabo_bench.hypergrad import LocalObjective, Oracles, make_estimator
from rabo_bench.submodel import StructuredMask
from tests.strategies import quadratic_problems, seeds

# (estimator, parameters) set so each is accurate to ~1e-8 on these well-conditioned problems;
# lr / eta = 1 / L_g are filled in per problem.
ACCURATE = {
    "exact": {},
    "cg": {"iterations": 50, "tol": 1e-14},
    "neumann": {"terms": 400},
    "itd": {"steps": 400},
    "coordinate_fd": {"steps": 400, "mu": 1e-3},
}


@st.composite
def masked_clients(draw):
    problem = draw(quadratic_problems(max_condition=4.0))
    cfg = problem.config
    rows_x = draw(st.lists(st.integers(0, cfg.dim_x - 1), min_size=1, unique=True))
    rows_y = draw(st.lists(st.integers(0, cfg.dim_y - 1), min_size=1, unique=True))
    client = draw(st.integers(0, cfg.num_clients - 1))
    return problem, client, torch.tensor(sorted(rows_x)), torch.tensor(sorted(rows_y))


def _restricted_closed_form(problem, client, x_full, t_rows, s_rows):
    cfg = problem.config
    H, B = problem.H[client], problem.B[client]
    x_emb = torch.zeros_like(x_full)
    x_emb[t_rows] = x_full[t_rows]
    H_ss, B_st = H[s_rows][:, s_rows], B[s_rows][:, t_rows]
    y_s = torch.linalg.solve(H_ss, B_st @ x_emb[t_rows] + problem.b[client][s_rows])
    y_emb = torch.zeros(cfg.dim_y, dtype=x_full.dtype)
    y_emb[s_rows] = y_s
    grad_y = (problem.P[client] @ (y_emb - problem.c[client]))[s_rows]
    grad_x = cfg.rho * (x_emb - problem.a[client]) - cfg.nu * torch.sin(x_emb)
    return y_s, grad_x[t_rows] + B_st.T @ torch.linalg.solve(H_ss, grad_y)


@given(masked_clients(), seeds, st.sampled_from(sorted(ACCURATE)))
def test_masked_estimators_match_the_restricted_closed_form(case, seed, name):
    problem, client, t_rows, s_rows = case
    x, y = problem.init_params(torch.Generator().manual_seed(seed))
    x_mask = StructuredMask.rows(x, {"x": t_rows})
    y_mask = StructuredMask.rows(y, {"y": s_rows})
    obj = LocalObjective(problem, client, x, y, x_mask, y_mask)
    y_s, reference = _restricted_closed_form(problem, client, x["x"], t_rows, s_rows)
    params = dict(ACCURATE[name])
    if name == "neumann":
        params["eta"] = 1 / problem.L_g
    elif name in ("itd", "coordinate_fd"):
        params["lr"] = 1 / problem.L_g
    start = y_s if name in ("exact", "cg", "neumann") else obj.pack_y(y)
    h = make_estimator(name, **params)(Oracles(obj), obj.pack_x(x), start, torch.Generator())
    torch.testing.assert_close(h, reference, rtol=1e-6, atol=1e-8)

    full = obj.unpack_x(h)["x"]
    outside = torch.ones_like(full, dtype=torch.bool)
    outside[t_rows] = False
    assert torch.all(full[outside] == 0)
    torch.testing.assert_close(full[t_rows], h)


@given(masked_clients(), seeds, st.sampled_from(["gaussian_zo", "coordinate_fd"]))
def test_sampling_estimators_stay_inside_the_mask(case, seed, name):
    problem, client, t_rows, s_rows = case
    x, y = problem.init_params(torch.Generator().manual_seed(seed))
    obj = LocalObjective(
        problem,
        client,
        x,
        y,
        StructuredMask.rows(x, {"x": t_rows}),
        StructuredMask.rows(y, {"y": s_rows}),
    )
    params = {"coordinates": max(1, len(t_rows) // 2)} if name == "coordinate_fd" else {}
    h = make_estimator(name, **params)(
        Oracles(obj), obj.pack_x(x), obj.pack_y(y), torch.Generator().manual_seed(seed)
    )
    assert h.shape == (len(t_rows),) and torch.isfinite(h).all()
    full = obj.unpack_x(h)["x"]
    outside = torch.ones_like(full, dtype=torch.bool)
    outside[t_rows] = False
    assert torch.all(full[outside] == 0)
