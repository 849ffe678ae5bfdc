"""Estimators register themselves: a module in ``hypergrad/estimators/`` is all it takes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from rabo_bench.hypergrad import HypergradientEstimator, available_estimators, make_estimator
from rabo_bench.hypergrad.base import register_estimator

ROOT = Path(__file__).resolve().parents[2]
KNOWN = ["cg", "coordinate_fd", "exact", "gaussian_zo", "itd", "neumann", "sampled_neumann"]

TOY = """
from dataclasses import dataclass
from typing import ClassVar

from rabo_bench.hypergrad.base import HypergradientEstimator, register_estimator


@register_estimator
@dataclass(frozen=True)
class Toy(HypergradientEstimator):
    name: ClassVar[str] = "toy"
    scale: float = 1.0

    def __call__(self, oracles, x, y, rng):
        return self.scale * x
"""


def test_every_estimator_module_registers_on_first_use():
    assert available_estimators() == KNOWN


def test_a_new_module_in_the_estimators_package_is_discovered(tmp_path):
    """A fresh interpreter whose estimators package also spans ``tmp_path``: the one new file
    there is found and built by name, with no import written anywhere."""
    (tmp_path / "toy.py").write_text(TOY)
    script = textwrap.dedent(
        f"""
        import rabo_bench.hypergrad.estimators as package
        from rabo_bench.hypergrad import available_estimators, make_estimator
        package.__path__.append({str(tmp_path)!r})
        print(available_estimators(), make_estimator("toy", scale=2.0).scale)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"{sorted([*KNOWN, 'toy'])} 2.0"


def test_unknown_names_list_the_known_estimators():
    with pytest.raises(ValueError) as err:
        make_estimator("magic")
    assert str(err.value) == f"unknown hypergradient estimator 'magic'; choose one of {KNOWN}"


def test_a_name_registers_once():
    @dataclass(frozen=True)
    class Impostor(HypergradientEstimator):
        name: ClassVar[str] = "neumann"

        def __call__(self, oracles, x, y, rng):
            return x

    with pytest.raises(ValueError, match="'neumann' is already registered"):
        register_estimator(Impostor)
    assert make_estimator("neumann").__class__.__name__ == "Neumann"
