"""No import runs up a layer (issue 18): the package is a stack of floors, and a module may import
from its own sub-package and from lower floors only, at any place in the module (functions and
``TYPE_CHECKING`` blocks included). A new sub-package must be given a floor here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {
    "params": 0,
    "submodel": 1,
    "data": 1,
    "models": 2,
    "problems": 3,
    "hypergrad": 4,
    "federated": 5,
    "metrics": 6,
    "algorithms": 6,
    "baselines": 7,
    "suites": 7,  # package data only
    "engine": 8,
    "tracking": 9,
    "report": 9,
    "theory": 9,
    "cli": 10,
    "__main__": 10,
}


def subpackage(path: Path) -> str:
    """The sub-package (or top-level module) of rabo_bench that a source file belongs to."""
    if path.parts[len(ROOT.parts)] == "baselines":
        return "baselines"
    first = path.relative_to(ROOT / "rabo_bench").parts[0]
    return first.removesuffix(".py")


def imported(path: Path) -> set[str]:
    """The rabo_bench sub-packages ``path`` imports from."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "rabo_bench" and len(parts) > 1 and parts[1] in FLOORS:
                found.add(parts[1])
                break
    return found


SOURCES = sorted(
    p
    for p in [*(ROOT / "rabo_bench").rglob("*.py"), *(ROOT / "baselines").glob("*.py")]
    if p.name != "__init__.py" or p.parent != ROOT / "rabo_bench"
)


def test_every_subpackage_has_a_floor():
    assert {subpackage(p) for p in SOURCES} <= set(FLOORS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_stack(path):
    own = subpackage(path)
    upward = {other for other in imported(path) if other != own and FLOORS[other] >= FLOORS[own]}
    assert not upward, f"{own} (floor {FLOORS[own]}) imports {sorted(upward)}"
