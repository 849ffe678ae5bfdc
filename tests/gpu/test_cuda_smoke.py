"""The paper suites' smoke presets on CUDA against the CPU (issue 15); skipped without a GPU.
Written on a machine without one, so not yet run (docs/scaling.md "GPUs" says what ran where).

Exact: every column that float round-off cannot move: identity and status, oracle calls,
messages, bytes, FLOPs (kernel shapes), coverage and the untrained fraction (masks from channel
rankings, which round-off reorders only where two channels' norms agree to ~1e-6).

Accuracies: a test prediction changes between devices only when its two best logits are
closer than the devices' float32 differences, and the barely trained smoke models have such
near-ties. Measured on the CPU against the tables made before (docs/scaling.md, "GPUs"), an
evaluation lost or gained at most FLIPS_MEASURED = 3 correct predictions (a sub-model average:
per client) under every stand-in for another device's float32 kernels: channels-last
convolutions (features 4e-7..2e-6 relative off), oneDNN switched off, parameters started 1e-5
relative off, every forward pass's features 1e-5 or 1e-6 relative off. The tolerance is 3
times that, in predictions of one evaluation (n = its test images, or test episodes x ways x
queries; the sub-models are evaluated on the intermediate set).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import pytest
import torch

from rabo_bench.engine.results import COSTS, COVERAGE, ORACLES, read_rows
from rabo_bench.engine.run import expand
from rabo_bench.engine.runner import ProblemCache, execute_suite
from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.problems.registry import resolved_params
from tests.placement import tensors_of

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

EXACT = ("run_id", "setting", "algorithm", "seed", "round", "status", "untrained_fraction")
EXACT += ORACLES + COSTS + COVERAGE
FLIPS_MEASURED = 3
FLIPS = 3 * FLIPS_MEASURED
SUITES = ("omniglot", "cifar-lt")


def table(tmp_path, suite: str, device: str, precision=None, channels_last=False) -> list[dict]:
    """The smoke preset's results table computed on ``device``."""
    out = tmp_path / f"{suite}-{device}-{precision}-{channels_last}"
    chosen = load_suite(suite, "smoke", device=device, precision=precision)
    execute_suite(chosen, out, progress=False, echo=lambda _: None, channels_last=channels_last)
    return read_rows(out / "results.csv")


@pytest.fixture(scope="module")
def on_cpu(tmp_path_factory) -> Callable[[str], list[dict[str, str]]]:
    """A suite's smoke table on the CPU, computed at its first use: a machine that holds one
    suite's data runs that suite's tests (``-k omniglot``; CIFAR-10's archive is too large to
    carry to a lent GPU machine)."""

    @functools.cache
    def of(suite: str) -> list[dict[str, str]]:
        return table(tmp_path_factory.mktemp("cpu"), suite, "cpu")

    return of


def predictions(suite: str, row: dict[str, str], column: str) -> int:
    """How many test predictions of one model ``column`` averages: the row's evaluation for
    the global model, the intermediate (curve) set for the clients' sub-models."""
    variant = next(v for v in load_suite(suite, "smoke").variants() if v.setting == row["setting"])
    params = resolved_params(variant.problem, variant.problem_params)
    details = json.loads(row["details"])
    if suite == "cifar-lt":
        return details["test_images"] if column == "accuracy" else params["curve_test"]
    tasks = details["test_tasks"] if column == "accuracy" else params["curve_tasks"]
    return tasks * params["ways"] * (20 - params["shots"])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("suite", SUITES)
def test_cuda_equals_the_cpu_up_to_round_off(root, tmp_path, on_cpu, suite, channels_last):
    cuda = table(tmp_path, suite, "cuda", channels_last=channels_last)
    assert len(cuda) == len(on_cpu(suite))
    for ours, theirs in zip(on_cpu(suite), cuda, strict=True):
        for column in EXACT:
            assert theirs[column] == ours[column], (column, ours["algorithm"], ours["round"])
        for column in ("accuracy", "submodel_accuracy"):
            if ours[column]:
                tolerance = FLIPS / predictions(suite, ours, column)
                assert float(theirs[column]) == pytest.approx(float(ours[column]), abs=tolerance)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("suite", SUITES)
def test_reduced_precisions_run_on_cuda_with_the_same_costs(
    root, tmp_path, on_cpu, suite, precision
):
    runs = table(tmp_path, suite, "cuda", precision=precision)
    for ours, theirs in zip(on_cpu(suite), runs, strict=True):
        assert theirs["status"] == "ok" and theirs["run_id"] != ours["run_id"]
        for column in ORACLES + COSTS + COVERAGE:
            assert theirs[column] == ours[column], column
        assert 0 <= float(theirs["accuracy"]) <= 1


@pytest.mark.parametrize("suite", SUITES)
def test_a_cuda_run_keeps_data_and_state_on_the_gpu(root, suite):
    spec = expand(load_suite(suite, "smoke", device="cuda"))[0]
    problem = ProblemCache("cuda")(spec)
    run = FederatedRun(problem, spec.algorithm, spec.capacities, spec.stream_key)
    run.step()
    state = {**tensors_of(run.x, ".x"), **tensors_of(run.y, ".y")}
    assert {t.device.type for t in state.values()} == {"cuda"}
    data = {p: t for p, t in tensors_of(problem).items() if t.is_floating_point()}
    assert data and {t.device.type for t in data.values()} == {"cuda"}
