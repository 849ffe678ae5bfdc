"""RABO (SPEC §2, Algorithm 1) and RAFBO (SPEC §3, Algorithm 2) as recipes.

Masks: importance-ordered channel segments, clients of equal capacity on different segments
(SPEC §2 Step 1 revision; nested top-r is the ablation ``policy = { type = "importance" }``).
Defaults are SPEC §7.1's [OURS] values (T = 10, beta = alpha = 0.01, N = 5, eta = 0.01,
mu = 1e-2, |S| = 256); suites override them per problem.
"""

from rabo_bench.algorithms.recipe import Algorithm
from rabo_bench.algorithms.registry import register
from rabo_bench.federated.inner import LocalSGD
from rabo_bench.federated.outer import LocalHypergradient
from rabo_bench.federated.policies import ImportanceSegments
from rabo_bench.hypergrad import make_estimator

RABO = register(
    Algorithm(
        name="rabo",
        description="RABO: dual-pruned sub-models, local SGD, local Neumann AID, masked averaging",
        policy=ImportanceSegments(),
        inner=LocalSGD(steps=10, lr=0.01),
        outer=LocalHypergradient(estimator=make_estimator("neumann", terms=5, eta=0.01), lr=0.01),
    )
)

RAFBO = register(
    Algorithm(
        name="rafbo",
        description="RAFBO: RABO with second-order-free coordinate finite differences (eq. 10)",
        policy=ImportanceSegments(),
        inner=LocalSGD(steps=10, lr=0.01),
        outer=LocalHypergradient(
            estimator=make_estimator("coordinate_fd", steps=10, lr=0.01, mu=1e-2, coordinates=256),
            lr=0.01,
        ),
    )
)
