"""Bad input to ``rabo-bench run``: one line ``rabo-bench: error: <what to fix>``, exit code 2,
no traceback and no output folder. Suite errors name the file, the line and the key; data errors
name the archive (a temporary data root holds a missing, truncated or altered copy).

The common cases (unknown names, capacities, TOML syntax) are in tests/integration/test_cli.py;
tests/property/test_malformed_suites.py generates malformed suites.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rabo_bench.data.archives import ENV
from rabo_bench.engine.suite import SUITES_DIR
from rabo_bench.engine.suite_file import key_lines
from tests.cli import run_cli

SYNTHETIC = (SUITES_DIR / "synthetic.toml").read_text()


def assert_refused(code: int, err: str, out: Path) -> str:
    """The refusal contract; returns the message after the prefix."""
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rabo-bench: error: "), err
    assert "Traceback" not in err
    assert not out.exists(), "nothing may be written before validation passes"
    return lines[0].removeprefix("rabo-bench: error: ")


def refuse(capsys, tmp_path: Path, *args: str) -> str:
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *args, "--no-mlflow", "--no-progress", "--out", str(out))
    return assert_refused(code, err, out)


def edited(tmp_path: Path, old: str, new: str) -> str:
    assert old in SYNTHETIC, old
    path = tmp_path / "edited.toml"
    path.write_text(SYNTHETIC.replace(old, new, 1))
    return str(path)


def line_of(path: str, needle: str) -> int:
    """The 1-based line of the first line holding ``needle``, found independently."""
    return next(
        k for k, line in enumerate(Path(path).read_text().splitlines(), 1) if needle in line
    )


# -- suite files: the error names the file, the line and the key ----------------------------
@pytest.mark.parametrize(
    ("old", "new", "written", "message"),
    [
        ("capacities = [1, 1,", "capacities = [1, 1.5,", "capacities =", "capacities[1] = 1.5"),
        ("dim_x = 20", "dim_z = 20", "dim_z", "unknown parameter problem.dim_z"),
        ("nu = 0.5", "nu = true", "nu = true", "problem.nu = True must be a number"),
        ("terms = 10 } }", "termz = 10 } }", "[overrides.rabo]", "overrides.rabo: unknown"),
        (
            "[overrides.fedmbo]\nouter = { lr = 0.05, estimator = { eta = 0.5, terms = 10 } }",
            "[overrides.fedmbo]\nouter = { lr = 0.05, eta = 0.5, terms = 10 }",
            "[overrides.fedmbo]",
            "unknown setting fedmbo.outer.eta; 'parallel_hypergradient' takes ['estimator', "
            "'lr']; use fedmbo.outer.estimator.eta",
        ),
        ("rounds = 3\n", "rounds = 0\n", "rounds = 0", "rounds = 0 must be an integer >= 1"),
        ("dim_y = 6 }", "dim_y = -6 }", "dim_y = -6", "problem.dim_y = -6 must be an integer >= 1"),
        ("seeds = 2", "seeds = 2\nbogus = 1", "bogus = 1", "unknown key presets.smoke.bogus"),
        ('"oap", "fedavg",\n', '"oap", "fedavg", "oap",\n', "algorithms =", "has duplicates"),
        ("[overrides.rafbo]", "[overrides.nope]", "[overrides.nope]", "unknown algorithm 'nope'"),
    ],
)
def test_suite_errors_name_file_line_and_key(capsys, tmp_path, old, new, written, message):
    path = edited(tmp_path, old, new)
    text = refuse(capsys, tmp_path, "run", path, "--preset", "smoke")
    assert f"edited.toml:{line_of(path, written)}: " in text and message in text


# -- values outside their range (issue 17): the whole key path and the allowed range ---------
@pytest.mark.parametrize(
    ("old", "new", "written", "message"),
    [
        (
            "inner = { steps = 5,",
            "inner = { steps = -5,",
            "steps = -5",
            "overrides.all.inner.steps = -5 must be an integer >= 1",
        ),
        (
            "outer = { lr = 0.05, estimator = { eta",
            "outer = { lr = -0.05, estimator = { eta",
            "lr = -0.05",
            "overrides.rabo.outer.lr = -0.05 must be a finite number > 0",
        ),
        (
            "mu = 1e-3",
            "mu = 0",
            "mu = 0",
            "overrides.rafbo.outer.estimator.mu = 0.0 must be a finite number > 0",
        ),
        (
            "noise = 0.3",
            "noise = 1.5",
            "noise = 1.5",
            "problem.noise = 1.5 must be a number in [0, 1)",
        ),
        (
            "seeds = 1\n",
            "diverge_factor = 1\n",
            "diverge_factor",
            "diverge_factor = 1 must be a finite number > 1",
        ),
    ],
)
def test_a_value_outside_its_range_is_refused_with_key_path_and_range(
    capsys, tmp_path, old, new, written, message
):
    path = edited(tmp_path, old, new)
    text = refuse(capsys, tmp_path, "run", path, "--preset", "smoke")
    assert text.endswith(f"edited.toml:{line_of(path, written)}: {message}"), text


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.integers(max_value=0), table=st.sampled_from(["rabo", "fedmbo", "all", "bilevel"]))
def test_any_steps_below_one_is_refused_with_its_key_path(capsys, tmp_path, steps, table):
    change = f"overrides.{table}.inner.steps={steps}"
    text = refuse(capsys, tmp_path, "run", "synthetic", "--preset", "smoke", "--set", change)
    assert text.endswith(
        f"(--set): overrides.{table}.inner.steps = {steps} must be an integer >= 1"
    )


def test_a_broken_preset_refuses_every_preset(capsys, tmp_path):
    """The whole file is validated: a bad cpu preset stops a smoke run too, and says so."""
    path = edited(tmp_path, "rounds = 300", "rounds = -300")
    text = refuse(capsys, tmp_path, "run", path, "--preset", "smoke")
    assert f":{line_of(path, 'rounds = -300')}: preset cpu: rounds = -300" in text


def test_a_base_value_hidden_by_the_preset_is_still_checked(capsys, tmp_path):
    path = edited(tmp_path, "dim_x = 20", 'dim_x = "twenty"')
    text = refuse(capsys, tmp_path, "run", path, "--preset", "smoke")
    assert f":{line_of(path, 'twenty')}: no preset: problem.dim_x = 'twenty'" in text


def test_a_setting_error_points_at_the_setting_table(capsys, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SYNTHETIC + "\n[settings.small]\nproblem = { num_clients = 3 }\n")
    text = refuse(capsys, tmp_path, "run", str(path))
    line = line_of(str(path), "num_clients = 3")
    capacities = line_of(str(path), "capacities =")
    assert f":{capacities}: settings.small: capacities has 10 entries" in text
    assert f"3 clients (problem.num_clients, line {line})" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("rounds", "argument --set: 'rounds': give one KEY=VALUE"),
        ("problem.dim_x=twenty", "strings need quotes"),
        ('problem.dim_x="twenty"', "synthetic.toml (--set): problem.dim_x = 'twenty' must be"),
        ("rounds=0", "synthetic.toml (--set): rounds = 0 must be an integer >= 1"),
        ("bogus=1", "synthetic.toml (--set): unknown key bogus"),
        ("overrides.all.outer.lr=0.1", "(--set): overrides.all: unknown setting fedavg.outer"),
        ("problem.num_clients=3", "the problem has 3 clients (problem.num_clients, --set)"),
    ],
)
def test_a_bad_set_is_refused_in_one_line(capsys, tmp_path, change, message):
    text = refuse(capsys, tmp_path, "run", "synthetic", "--preset", "smoke", "--set", change)
    assert message in text


def test_key_lines_follow_tables_dotted_and_quoted_keys():
    text = 'a = 1\n[t.u]   # c\nb.c = 2\n"q.r" = 3\n[[arr]]\nd = { e = 4 }\n'
    lines = key_lines(text)
    assert lines[("a",)] == 1 and lines[("t",)] == lines[("t", "u")] == 2
    assert lines[("t", "u", "b", "c")] == 3 and lines[("t", "u", "q.r")] == 4
    assert lines[("arr", "d")] == 6 and ("arr", "d", "e") not in lines


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"rounds = \xff\n", "not UTF-8 text"), (b"rounds = [\n", "invalid TOML")],
)
def test_unreadable_suite_files(capsys, tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    assert message in refuse(capsys, tmp_path, "run", str(path))


@pytest.mark.parametrize(
    "args",
    [
        ["run", "synthetic", "--bogus"],
        ["run", "synthetic", "--seeds", "-1"],
        ["run", "synthetic", "--algorithms", ","],
        ["run", "synthetic", "--preset"],
        ["run", str(SUITES_DIR)],
        ["nope"],
    ],
)
def test_bad_options(capsys, tmp_path, args):
    refuse(capsys, tmp_path, *args)


# -- data: missing, truncated or altered archives -----------------------------------------
def _missing(root: Path, target: Path) -> None:
    """No archive at all."""


def _truncated(root: Path, target: Path) -> None:
    target.write_bytes((root / target.name).read_bytes()[:100_000])


def _flipped_byte(root: Path, target: Path) -> None:
    """One byte changed inside the stored images: the zip's CRC check refuses it."""
    data = bytearray((root / target.name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def _other_pixel(root: Path, target: Path) -> None:
    """A well-formed archive with one pixel changed: only the digest can tell."""
    with np.load(root / target.name) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["images"][0, 0, 0, 0] ^= 1
    np.savez(target, **arrays)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_missing, "missing .*omniglot28.npz: the data root"),
        (_truncated, r"omniglot28.npz is not a readable \.npz archive"),
        (_flipped_byte, r"omniglot28.npz is not a readable \.npz archive"),
        (_other_pixel, "array 'images' fails its digest check"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:],
)
def test_damaged_data_is_refused_before_anything_is_written(
    root, monkeypatch, capsys, tmp_path, damage, message
):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("omniglot.npz", "cifar10.npz"):  # the archives the smoke preset does not read
        (data / name).symlink_to(root / name)
    damage(root, data / "omniglot28.npz")
    monkeypatch.setenv(ENV, str(data))
    text = refuse(capsys, tmp_path, "run", "omniglot", "--preset", "smoke")
    assert re.search(message, text), text


def test_no_data_root_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "nowhere"))
    assert f"{ENV}=" in refuse(capsys, tmp_path, "run", "omniglot", "--preset", "smoke")


def test_a_suite_without_data_needs_no_data_root(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(ENV, "")
    out = tmp_path / "out"
    args = ["run", "synthetic", "--preset", "smoke", "--algorithms", "fedavg", "--seeds", "1"]
    code, _, err = run_cli(capsys, *args, "--no-mlflow", "--no-progress", "--out", str(out))
    assert code == 0, err
