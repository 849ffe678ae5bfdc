"""Template: a new federated algorithm as a recipe of round-loop parts (docs/extending.md).

To use it, copy this file to ``baselines/<your_method>.py`` and rename what it registers. The
algorithm registry imports every module of ``baselines/`` (installed as
``rabo_bench.baselines``) on first use, so the ``register(...)`` calls below are all it takes
for ``rabo-bench list`` to show the methods and for a suite to name them. Nothing else changes,
and no round loop is written here: there is one, in ``rabo_bench/federated/rounds.py``.

An algorithm is ``Algorithm(name, description, policy, inner, outer)``:

* ``policy`` (``MaskPolicy``): which channels each client trains this round, given the
  clients' capacities (width ratios r in (0, 1]);
* ``inner`` (``InnerSolver``): how clients move y on their sub-models (single-level methods
  move x too) and how the server averages the updates;
* ``outer`` (``OuterStep``): how clients estimate grad F and the server steps x.

This file shows the two ways to make one: (1) a recipe of existing parts, and (2) a new part,
here a mask policy, used by a bilevel and a single-level recipe. ``tests/integration/
test_templates.py`` imports this file and runs each recipe for two rounds, so it stays true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import Algorithm, register, single_level
from rabo_bench.federated.inner import LocalSGD
from rabo_bench.federated.outer import LocalHypergradient
from rabo_bench.federated.policies import ImportanceSegments, MaskPolicy, layer_masks
from rabo_bench.hypergrad import make_estimator
from rabo_bench.submodel import ClientMasks
from rabo_bench.submodel.channels import ChannelLayers

# (1) A recipe of existing parts: RABO (see rabo_bench/algorithms/rabo.py) with the
# conjugate-gradient estimator instead of the Neumann series. Hyperparameters given here are
# defaults; a suite changes them per problem with
#     [overrides.my_rabo_cg]
#     outer = { lr = 0.05, estimator = { iterations = 20 } }
MY_RABO_CG = register(
    Algorithm(
        name="my_rabo_cg",
        description="Template: RABO with conjugate-gradient hypergradients",
        policy=ImportanceSegments(),
        inner=LocalSGD(steps=10, lr=0.01),
        outer=LocalHypergradient(estimator=make_estimator("cg", iterations=10), lr=0.01),
    )
)


# (2) A new part. Parts are frozen dataclasses: every field is a setting, so it appears in
# Algorithm.to_dict() (hence in the run id and in MLflow params) and a suite can override it
# by name (overrides.<algorithm>.policy.mask_x = false). ``name`` is a ClassVar, not a field:
# it is the part's type, and a suite can swap this policy into another algorithm with
#     overrides.rabo = { policy = { type = "my_random_channels" } }
@dataclass(frozen=True)
class RandomChannels(MaskPolicy):
    """Every client keeps ceil(r C) channels of every channel layer, drawn uniformly without
    replacement, anew every round (a control for RABO's importance order)."""

    name: ClassVar[str] = "my_random_channels"
    mask_x: bool = True  # False: only y is pruned, every client holds all of x

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        # ``layers`` is the problem's channel structure (a conv's output channel takes the next
        # layer's input channel with it); on the synthetic problems every row is a channel.
        layers = layers or ChannelLayers.rows_of(x, y)
        sides = frozenset({"x", "y"} if self.mask_x else {"y"})

        # ``rng`` is this round's mask stream, derived from (run, round): the ONLY randomness a
        # policy may use, so a run is reproducible and resumable. Clients draw in client order.
        def choose(layer, x, y, keep: int) -> torch.Tensor:
            return torch.randperm(layer.size, generator=rng)[:keep]

        # layer_masks keeps ``choose(...)`` channels of each layer on ``sides`` and holds the
        # other layers whole; one ClientMasks (m_x, m_y) per client.
        return [layer_masks(layers, x, y, r, choose, sides) for r in capacities]


# A bilevel recipe with the new policy: RABO's inner and outer phases (local SGD on g, local
# Neumann hypergradients, parameter-wise masked averaging, SPEC eq. 6-8).
MY_RABO_RANDOM = register(
    Algorithm(
        name="my_rabo_random",
        description="Template: RABO with uniformly random channel masks",
        policy=RandomChannels(),
        inner=LocalSGD(steps=10, lr=0.01),
        outer=LocalHypergradient(estimator=make_estimator("neumann", terms=5, eta=0.01), lr=0.01),
    )
)

# A single-level recipe with it: clients train (x, y) jointly on the problem's task loss and
# there is no outer step, like Static, FedRolex, FIARSE and OAP (baselines/). ``label`` is the
# name reports print, where it should differ from the registry name.
MY_RANDOM_SINGLE_LEVEL = register(
    single_level(
        "my_random_single_level",
        "Template: random channel sub-models, single-level joint SGD",
        RandomChannels(),
        label="Random channels (template)",
    )
)
