"""Run by ``torchrun`` in test_distributed.py: a few rounds of every synthetic algorithm with
the clients sharded over the ranks; rank 0 saves the final state and the per-round ledgers.
Also importable: ``trajectories`` is the single-process reference."""

from __future__ import annotations

import os
import sys

import torch

from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.distributed import init_from_env, leave
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.problems.registry import make_problem

ROUNDS = 3


def trajectories(clients: str) -> dict[str, dict]:
    suite = load_suite("synthetic", "smoke")
    problem = make_problem(suite.problem, suite.problem_params)
    out = {}
    for name in suite.algorithms:
        run = FederatedRun(problem, suite.algorithm(name), suite.capacities, "dist", clients)
        ledgers = []
        for _ in range(ROUNDS):
            ledger = run.step().ledger
            counters = [c.as_dict() for c in ledger.counters]
            ledgers.append((counters, ledger.params_down, ledger.params_up))
        out[name] = {"x": run.x, "y": run.y, "ledgers": ledgers, "simulator": run.simulator.name}
    return out


if __name__ == "__main__":
    rank, _ = init_from_env()
    result = trajectories(sys.argv[2])
    if rank == 0:
        torch.save(result, sys.argv[1])
    print(f"rank {rank}: computed", file=sys.stderr, flush=True)
    leave(together=True)
    print(f"rank {rank}: left the process group", file=sys.stderr, flush=True)
    # skip interpreter finalisation: in the full CI suite a rank was seen to abort there
    # ("terminate called without an active exception", SIGABRT) after its work was done
    os._exit(0)
