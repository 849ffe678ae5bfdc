"""The device tag names where the runs compute, not the accelerator the machine happens to have:
a `--device cpu` run on a GPU machine is tagged with the CPU."""

import torch

from rabo_bench.tracking import context


def test_device_tag_is_the_runs_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda where=None: f"GPU {where}")
    assert context.device(torch.device("cpu")).startswith("cpu: ")
    assert context.device(torch.device("cuda:1")) == "cuda:1: GPU cuda:1"


def test_command_tags_carry_the_device():
    tags = context.command_tags("rabo-bench run x", "smoke", torch.device("cpu"))
    assert tags["rabo_bench.device"].startswith("cpu: ")
    assert tags["rabo_bench.preset"] == "smoke"
