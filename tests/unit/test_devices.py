"""Where runs compute (issue 15): the device names, their resolution on machines with and
without CUDA (CUDA simulated by patching torch.cuda's queries: nothing is allocated there),
the precisions a problem accepts, and the TF32 switch that scopes a run."""

from __future__ import annotations

import pytest
import torch

from rabo_bench.engine.devices import is_device_name, run_device, suite_device
from rabo_bench.engine.suite import load_suite
from rabo_bench.models.compute import Compute, tf32_switched
from rabo_bench.problems.fewshot import FewShotProblem
from rabo_bench.problems.loss_tuning import LossTuningProblem
from rabo_bench.problems.quadratic import QuadraticBilevel


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that says it has two CUDA devices."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names(name):
    assert is_device_name(name)


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", "", 0, None])
def test_other_device_names_are_refused(name):
    assert not is_device_name(name)
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        run_device(name, FewShotProblem, "fp32")


def test_auto_is_the_cpu_without_cuda(no_gpu):
    for problem in (FewShotProblem, LossTuningProblem, QuadraticBilevel):
        assert run_device("auto", problem, "fp32") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        run_device("cuda", FewShotProblem, "fp32")


def test_auto_puts_the_network_problems_on_the_gpu(two_gpus, monkeypatch):
    assert run_device("auto", FewShotProblem, "bf16") == torch.device("cuda", 0)
    assert run_device("auto", QuadraticBilevel, "fp32") == torch.device("cpu")  # float64, CPU
    assert run_device("cuda:1", LossTuningProblem, "tf32") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second rank on this machine: GPU 1
    assert run_device("cuda", LossTuningProblem, "fp32") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match="no GPU of its own"):
        run_device("auto", LossTuningProblem, "fp32")


def test_what_cannot_work_is_one_line(two_gpus):
    with pytest.raises(ValueError, match="runs on the CPU only"):
        run_device("cuda", QuadraticBilevel, "fp32")
    with pytest.raises(ValueError, match="has 2 GPUs"):
        run_device("cuda:2", FewShotProblem, "fp32")
    with pytest.raises(ValueError, match="tf32 is a CUDA tensor-core mode"):
        run_device("cpu", FewShotProblem, "tf32")
    with pytest.raises(ValueError, match="float64 and supports fp32 only"):
        run_device("cpu", QuadraticBilevel, "bf16")


def test_a_suite_resolves_one_device_for_all_its_settings(no_gpu):
    assert suite_device(load_suite("omniglot", "smoke")) == torch.device("cpu")
    with pytest.raises(ValueError, match="tf32 is a CUDA tensor-core mode"):
        suite_device(load_suite("omniglot", "smoke", precision="tf32"))


def test_precision_is_checked_with_the_suite():
    assert load_suite("cifar-lt", "smoke", precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match=r"synthetic.toml \(--set\): precision bf16: problem"):
        load_suite("synthetic", "smoke", precision="bf16")
    with pytest.raises(ValueError, match="must be one of"):
        load_suite("synthetic", "smoke", device="gpu")
    with pytest.raises(ValueError, match="precision"):
        Compute(precision="fp16")


def test_the_tf32_switch_is_scoped_to_the_block():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32
    with tf32_switched("tf32"):
        assert matmul.allow_tf32 and cudnn.allow_tf32
    assert (matmul.allow_tf32, cudnn.allow_tf32) == before
    with tf32_switched("fp32"):  # fp32 means IEEE float32: cuDNN's TF32 default is off too
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
    assert (matmul.allow_tf32, cudnn.allow_tf32) == before
