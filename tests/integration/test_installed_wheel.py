"""rabo-bench installed from its wheel (not editable) runs a shipped suite from any folder, reads
the suite from the installed package and writes its results under that folder.

The wheel is built from a copy of the project (building writes build/ and *.egg-info into the
folder it builds), without network (``--no-index``, ``--no-build-isolation``: the venv's
setuptools), installed with ``pip install --target`` into a temporary folder and run from
another one as ``python -S -m rabo_bench.cli``. ``-S`` matters: without it site.py runs the
venv's .pth files, among them the editable install's meta-path finder
(``__editable___rabo_bench_*_finder``), which maps rabo_bench and its sub-packages to the
source tree. PYTHONPATH puts the wheel before that finder, but any sub-package the wheel lacks
would still be imported silently from the source tree (tried: a wheel without
rabo_bench.baselines ran with /work/main/baselines), so this test could not catch a package
left out of the wheel. With ``-S`` only PYTHONPATH counts: the wheel's folder, then the venv's
site-packages for torch and the other dependencies, whose .pth files then do not run.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "rabo_bench", "baselines", "suites")
PIP = ("--no-index", "--disable-pip-version-check", "--quiet")


def pip(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, *PIP],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The folder the wheel was installed into (``pip install --target``)."""
    root = tmp_path_factory.mktemp("wheel")
    copy = root / "project"
    copy.mkdir()
    for name in SOURCES:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(
                source, copy / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, copy / name)
    pip("wheel", "--no-deps", "--no-build-isolation", ".", "-w", str(root / "dist"), cwd=copy)
    (wheel,) = (root / "dist").glob("rabo_bench-*.whl")
    pip("install", "--no-deps", "--target", str(root / "site"), str(wheel), cwd=root)
    return root / "site"


def python_s(installed: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -S ARGS`` in ``cwd`` with the wheel and the venv's dependencies only."""
    dependencies = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        dependencies.append(site.getusersitepackages())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed), *dependencies]))
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_installed_command_runs_a_shipped_suite_here(installed, tmp_path):
    run = ["run", "synthetic", "--preset", "smoke", "--no-mlflow", "--no-progress"]
    done = python_s(installed, "-m", "rabo_bench.cli", *run, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"suite synthetic ({installed / 'rabo_bench' / 'suites' / 'synthetic.toml'})" in (
        done.stdout
    )
    out = tmp_path / "out" / "synthetic-smoke"
    assert f"output folder: {out}" in done.stdout
    assert (out / "results.csv").is_file() and (out / "summary.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_every_module_comes_from_the_wheel(installed, tmp_path):
    probe = (
        "import sys, rabo_bench.cli, rabo_bench.engine.suite, rabo_bench.suites\n"
        "from rabo_bench.algorithms import available\n"
        "available()  # imports every baseline\n"
        "for name, module in sorted(sys.modules.items()):\n"
        "    if name.split('.')[0] == 'rabo_bench':\n"
        "        print(module.__file__)\n"
    )
    done = python_s(installed, "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    files = [Path(line) for line in done.stdout.splitlines()]
    assert installed / "rabo_bench" / "baselines" / "fedmbo.py" in files
    assert installed / "rabo_bench" / "suites" / "__init__.py" in files
    assert [f for f in files if not f.is_relative_to(installed)] == []
