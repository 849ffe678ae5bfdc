"""Counted first- and second-order oracles of a client objective (DESIGN.md section 4).

Every derivative an estimator uses goes through :class:`Oracles`, which counts it:

* ``grad_f``: one evaluation of (grad_x f, grad_y f) on a batch;
* ``grad_g``: one evaluation of grad_y g at a held x (one inner SGD step costs one);
* ``hvp``: one Hessian-vector product  d^2_yy g · v;
* ``jvp``: one mixed Jacobian-vector product  d^2_xy g · v  (a vector in x space).

Products come from :meth:`Oracles.linearise`: grad_y g at (x, y) on one batch, built once (a
forward of g and a backward with ``create_graph``) and kept, so that every product of an
estimate with that (x, y, batch) is one backward through the same graph, counted as one hvp or
jvp. A counted product therefore costs one backward through grad_y g's graph; building the graph
costs about one grad_g more per (x, y, batch), uncounted (``Oracles.hvp`` and ``Oracles.mixed``
build one for their product alone, so they cost both).

Counted calls run eagerly with ``torch.autograd`` double back-prop (2-4x less overhead than
``torch.func`` transforms per call on small problems, measured); ``grad_y_g_uncounted`` and
``inner_steps_uncounted`` use ``torch.func`` so that estimators can differentiate through them or
``vmap`` them. :class:`FunctionalOracles` counts the same calls but computes every one with
``torch.func`` transforms, so whole clients can run under ``vmap`` (the vectorised simulator);
there each product is its own transform (forward and first backward included).
No matrix is ever formed here.

Inner steps hold x, so where g is a head on features of x (``BilevelProblem.head_on_features``,
the few-shot problem) they take their losses from ``LocalObjective.lower_in_y``: the features of
each distinct batch are computed once per run of steps (one backbone forward, without a graph
for x in the counted steps) and every step evaluates the head alone. One inner step is still
one counted grad_g, but a grad_g then costs a head forward and backward, plus one feature
computation per distinct batch of its run of steps (a run of T steps on one support set: one
backbone forward, not T). The same holds for the uncounted steps that unrolled estimators
differentiate or ``vmap`` (per perturbed x, in RAFBO's runs); derivatives in x then flow
through the features once (ITD's per-step hvp and jvp counts keep their meaning: the reverse
pass through each step).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch.func import grad, jvp, vjp

from rabo_bench.hypergrad.objective import LocalObjective
from rabo_bench.problems.base import Batch
from rabo_bench.problems.single_level import TASK_LOSS


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().requires_grad_(True)


def _grad(output, inputs, grad_output=None, create_graph=False, retain_graph=None):
    """autograd.grad with zeros for inputs the output does not depend on (e.g. f without x).
    The zeros are filled in here: autograd's ``materialize_grads`` costs about 35 us a call
    (a quarter of a d = 100 Hessian-vector product, measured)."""
    if not output.requires_grad:
        return tuple(torch.zeros_like(t) for t in inputs)
    grads = torch.autograd.grad(
        output,
        inputs,
        grad_output,
        retain_graph=retain_graph,
        create_graph=create_graph,
        allow_unused=True,
    )
    pairs = zip(grads, inputs, strict=True)
    return tuple(torch.zeros_like(t) if g is None else g for g, t in pairs)


@dataclass
class OracleCounter:
    grad_f: int = 0
    grad_g: int = 0
    hvp: int = 0
    jvp: int = 0

    def __iadd__(self, other: OracleCounter) -> OracleCounter:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def total(self) -> int:
        return self.grad_f + self.grad_g + self.hvp + self.jvp

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class GradientGraph:
    """grad_y g at one (x, y) on one batch, with the autograd graph that made it: each product
    is one backward through that graph (kept for the next), counted as one hvp or jvp."""

    counter: OracleCounter
    x: torch.Tensor  # the leaves the graph was built from
    y: torch.Tensor
    grad_y: torch.Tensor

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """d^2_yy g · v."""
        self.counter.hvp += 1
        return self._backward(self.y, v)

    def mixed(self, v: torch.Tensor) -> torch.Tensor:
        """d^2_xy g · v = grad_x <grad_y g(x, y), v>."""
        self.counter.jvp += 1
        return self._backward(self.x, v)

    def _backward(self, leaf: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """<grad_y g, v> differentiated in ``leaf``, the graph kept: :func:`_grad` for one
        input, without its tuples (a product is a few microseconds of Python at d = 100)."""
        if not self.grad_y.requires_grad:
            return torch.zeros_like(leaf)
        (out,) = torch.autograd.grad(self.grad_y, leaf, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(leaf) if out is None else out


class Oracles:
    """Derivatives of one :class:`LocalObjective`, each call counted in ``self.counter``."""

    def __init__(self, objective: LocalObjective, counter: OracleCounter | None = None) -> None:
        self.objective = objective
        self.counter = counter if counter is not None else OracleCounter()

    def on(self, objective: LocalObjective) -> Oracles:
        """The same kind of oracles on another objective (a task of this client's), counted in
        this counter."""
        return self if objective is self.objective else type(self)(objective, self.counter)

    def grad_y_g_uncounted(self, x: torch.Tensor, y: torch.Tensor, batch: Batch) -> torch.Tensor:
        """grad_y g, for use inside functions that are differentiated again (caller counts)."""
        return grad(self.objective.g, argnums=1)(x, y, batch)

    def grad_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch):
        """(grad_x f, grad_y f)."""
        self.counter.grad_f += 1
        with torch.enable_grad():
            x, y = _leaf(x), _leaf(y)
            return _grad(self.objective.f(x, y, batch), (x, y))

    def grad_task(self, x: torch.Tensor, y: torch.Tensor, batch: Batch, loss=TASK_LOSS):
        """(grad_x, grad_y) of a single-level ``loss`` (see ``LocalObjective.task``);
        counted as one grad_f and one grad_g (it evaluates both levels' data)."""
        self.counter.grad_f += 1
        self.counter.grad_g += 1
        with torch.enable_grad():
            x, y = _leaf(x), _leaf(y)
            return _grad(self.objective.task(x, y, batch, loss), (x, y))

    def grad_g(self, x: torch.Tensor, y: torch.Tensor, batch: Batch) -> torch.Tensor:
        """grad_y g(x, y; batch) with x held."""
        return self._grad_y(self.objective.lower_in_y(x.detach(), [batch])[0], y)

    def _grad_y(self, loss, y: torch.Tensor) -> torch.Tensor:
        """The gradient of ``loss`` (a function of y alone, from ``lower_in_y``): one grad_g."""
        self.counter.grad_g += 1
        with torch.enable_grad():
            y = _leaf(y)
            return _grad(loss(y), (y,))[0]

    def linearise(self, x: torch.Tensor, y: torch.Tensor, batch: Batch) -> GradientGraph:
        """grad_y g(x, y; batch) with its graph kept: the products of one estimate with the same
        d^2_yy g and d^2_xy g all go through it. Building it is a forward of g and a backward
        with ``create_graph``, uncounted: each product through it counts."""
        with torch.enable_grad():
            x, y = _leaf(x), _leaf(y)
            grad_y = _grad(self.objective.g(x, y, batch), (y,), create_graph=True)[0]
        return GradientGraph(self.counter, x, y, grad_y)

    def hvp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch) -> torch.Tensor:
        """d^2_yy g · v, on a graph built for this product alone."""
        return self.linearise(x, y, batch).hvp(v)

    def mixed(
        self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch
    ) -> torch.Tensor:
        """d^2_xy g · v = grad_x <grad_y g(x, y), v>, on a graph built for this product alone."""
        return self.linearise(x, y, batch).mixed(v)

    def inner_steps(
        self, x: torch.Tensor, y: torch.Tensor, lr: float, batches: list[Batch]
    ) -> torch.Tensor:
        """len(batches) SGD steps on g from y (SPEC eq. 5), eagerly, one grad_g each (the
        features of a head-on-features problem once per distinct batch: module docstring)."""
        for loss in self.objective.lower_in_y(x.detach(), batches):
            y = y - lr * self._grad_y(loss, y)
        return y

    def inner_steps_uncounted(
        self, x: torch.Tensor, y: torch.Tensor, lr: float, batches: list[Batch]
    ) -> torch.Tensor:
        """len(batches) SGD steps on g from y (SPEC eq. 5), differentiable in x; the caller
        counts them (they may run under ``vmap`` or be traced once for many runs)."""
        for loss in self.objective.lower_in_y(x, batches):
            y = y - lr * grad(loss)(y)
        return y


class FunctionalOracles(Oracles):
    """The same counted oracles through ``torch.func`` only (no ``torch.autograd.grad``), so a
    client's whole computation can run under ``vmap``; equal to the eager ones to rounding.
    Under ``vmap`` each call is traced once for all clients of a group, so the counter holds
    one client's counts (the engine books them for every client of the group)."""

    def grad_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch):
        self.counter.grad_f += 1
        return grad(self.objective.f, argnums=(0, 1))(x, y, batch)

    def grad_task(self, x: torch.Tensor, y: torch.Tensor, batch: Batch, loss=TASK_LOSS):
        self.counter.grad_f += 1
        self.counter.grad_g += 1
        return grad(self.objective.task, argnums=(0, 1))(x, y, batch, loss)

    def _grad_y(self, loss, y: torch.Tensor) -> torch.Tensor:
        self.counter.grad_g += 1
        return grad(loss)(y)

    def linearise(self, x: torch.Tensor, y: torch.Tensor, batch: Batch) -> Products:
        """The products at (x, y) on ``batch``, each its own transform (no graph to keep under
        ``vmap``)."""
        return Products(self, x, y, batch)

    def hvp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch) -> torch.Tensor:
        """d^2_yy g · v, forward over reverse."""
        self.counter.hvp += 1
        return jvp(lambda yy: self.grad_y_g_uncounted(x, yy, batch), (y,), (v,))[1]

    def mixed(
        self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch
    ) -> torch.Tensor:
        """d^2_xy g · v: the vector-Jacobian product of x -> grad_y g(x, y) with v."""
        self.counter.jvp += 1
        _, pullback = vjp(lambda xx: self.grad_y_g_uncounted(xx, y, batch), x)
        return pullback(v)[0]


@dataclass(frozen=True)
class Products:
    """The products of :meth:`FunctionalOracles.linearise`: each one a counted oracle call."""

    oracles: FunctionalOracles
    x: torch.Tensor
    y: torch.Tensor
    batch: Batch

    @property
    def grad_y(self) -> torch.Tensor:
        """grad_y g at (x, y) on the batch, uncounted, as ``GradientGraph.grad_y``."""
        return self.oracles.grad_y_g_uncounted(self.x, self.y, self.batch)

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        return self.oracles.hvp(self.x, self.y, v, self.batch)

    def mixed(self, v: torch.Tensor) -> torch.Tensor:
        return self.oracles.mixed(self.x, self.y, v, self.batch)
