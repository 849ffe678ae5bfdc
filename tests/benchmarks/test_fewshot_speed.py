"""The Omniglot round next to a plain PyTorch loop doing the same arithmetic (issue 15 item 6).

``reference_round.py`` (the project's shared bench script, ``../shared/bench`` beside the
repository, or RABO_BENCH_REFERENCE) does one federated round's work on the few-shot problem
with no masks, registries or counters: per client a physically narrow backbone, the episodes'
images in one forward, per-episode heads on detached features, Neumann products, one backbone
backward (bilevel); or L local SGD steps of backbone and head (single level). It runs here in a
subprocess of the same interpreter, with the same configuration, back to back with the
harness's round, so ``harness / reference`` measures the harness's overhead on this machine.

Two sizes, both 5-way 5-shot with the suite's capacities (1, 1, 1/2, ..., 1/16, 1/16):

* ``cpu``: the omniglot ``cpu`` preset (Conv4 of width 16, one episode per client and round,
  T = 5 inner steps, N = 5 Neumann terms, 5 local steps for the single-level methods);
* ``paper``: the suite without a preset (ResNet12, 16 episodes, T = 10, N = 5, 10 local steps).
  On a CPU a paper-sized round takes many minutes (a ResNet12 single-level round at 10 local
  steps is about 1.6 TFLOP), so this size runs only on CUDA or with RABO_BENCH_PAPER_SIZE=1.

What is compared is a round's work, not an algorithm: RABO's round (inner phase, then per task
the re-adapted head and the Neumann estimate) against the reference's bilevel client, Static's
(local steps of the prototypical loss) against its single-level client. Times are the best of
``ROUNDS`` calls on both sides (the reference's ``--reps``); FLOPs are counted on one further
call by the rule of tests/benchmarks/flops.py on our side and by FlopCounterMode on the
reference's (the same counter, without the matrix-vector kernels a CNN round does not use).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.models.compute import Compute
from rabo_bench.problems.registry import make_problem
from tests.benchmarks.flops import MatmulPeak, count_flops, record

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(
    os.environ.get("RABO_BENCH_REFERENCE", REPO.parent / "shared" / "bench" / "reference_round.py")
)
SETTING = "5w5s"
PRESETS = {"cpu": "cpu", "paper": None}  # size -> the suite's preset
ROUNDS = {"cpu": 3, "paper": 1}
KIND = {"rabo": "bilevel", "static": "single_level"}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="module")
def peak() -> MatmulPeak:
    """The dense-matmul FLOP/s of the device the rounds run on (the GPU where there is one;
    the session's ``peak`` measures the CPU, where the other benchmarks run)."""
    with torch.device(device()):
        return MatmulPeak.measure()


@pytest.fixture(scope="module", params=list(PRESETS))
def size(request, root):
    """(size name, the 5w5s setting of that size); ``root`` skips the module without data."""
    name = request.param
    forced = os.environ.get("RABO_BENCH_PAPER_SIZE") == "1"
    if name == "paper" and device().type == "cpu" and not forced:
        pytest.skip("paper size on a CPU: many minutes a round (RABO_BENCH_PAPER_SIZE=1 runs it)")
    suite = load_suite("omniglot", PRESETS[name])
    return name, next(v for v in suite.variants() if v.setting == SETTING)


def reference_args(setting) -> list[str]:
    """reference_round.py's options for the same workload as ``setting``'s round."""
    params = setting.problem_params
    rabo, static = setting.algorithm("rabo"), setting.algorithm("static")
    return [
        f"--net={params['backbone']}",
        f"--width={params['width']}",
        f"--capacities={','.join(str(c) for c in setting.capacities)}",
        f"--ways={params['ways']}",
        f"--shots={params['shots']}",
        f"--episodes={params['tasks_per_batch']}",
        f"--inner-steps={rabo.inner.steps}",
        f"--neumann-terms={rabo.outer.estimator.terms}",
        f"--local-steps={static.inner.steps}",
        f"--device={device()}",
        "--precision=fp32",
    ]


@pytest.fixture(scope="module")
def reference(size, tmp_path_factory) -> dict:
    if not REFERENCE.is_file():
        pytest.skip(f"no reference script at {REFERENCE} (set RABO_BENCH_REFERENCE)")
    name, setting = size
    out = tmp_path_factory.mktemp("reference") / "round.json"
    args = [*reference_args(setting), f"--threads={torch.get_num_threads()}"]
    args += [f"--reps={ROUNDS[name]}", f"--out={out}"]
    subprocess.run([sys.executable, str(REFERENCE), *args], check=True, capture_output=True)
    return json.loads(out.read_text())


@pytest.mark.parametrize("algorithm", list(KIND))
def test_fewshot_round(benchmark, peak, size, reference, algorithm):
    name, setting = size
    problem = make_problem(setting.problem, setting.problem_params)
    problem.place(Compute(device()))
    run = FederatedRun(
        problem, setting.algorithm(algorithm), setting.capacities, "bench", clients="sequential"
    )
    flops = count_flops(run.step)
    kind = KIND[algorithm]
    benchmark.group = f"omniglot {SETTING} round vs reference, {name} size"
    benchmark.extra_info.update(
        algorithm=algorithm,
        size=name,
        setting=SETTING,
        reference_kind=kind,
        reference_s=reference[f"{kind}_round_s"],
        reference_flops=reference[f"{kind}_round_gflop"] * 1e9,
        reference_flop_fraction=reference[f"{kind}_flop_fraction"],
        reference_config=" ".join(reference_args(setting)),
    )
    benchmark.pedantic(run.step, rounds=ROUNDS[name], warmup_rounds=1)
    record(benchmark, flops, problem.dtype, peak)
    if benchmark.stats is not None:
        best = benchmark.stats.stats.min
        benchmark.extra_info.update(best_s=best, ratio=best / reference[f"{kind}_round_s"])
