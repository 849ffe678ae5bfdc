"""Suites with [settings.NAME] tables: one validated variant per table, run ids that name the
setting, errors that name ``settings.NAME``, and a ``setting`` column in the results table.

No data needed: tiny suites of the synthetic "quadratic" problem written to tmp_path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rabo_bench.engine.results import read_rows
from rabo_bench.engine.run import expand
from rabo_bench.engine.runner import ProblemCache
from rabo_bench.engine.suite import SUITES_DIR, load_suite
from tests.cli import run_cli

BASE = """\
name = "tiny"
rounds = 2
seeds = 2
algorithms = ["fedavg", "fedmbo"]
capacities = [1, 1, 0.5, 0.5]

[problem]
name = "quadratic"
dim_x = 3
dim_y = 3
num_clients = 4
"""

SETTINGS = """
[settings.wide]
problem = { dim_x = 5 }

[settings.pair]
problem = { num_clients = 2 }
capacities = [1, 0.25]
algorithms = ["fedavg"]
rounds = 1
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def digest(config: dict) -> str:
    """The run id rule (runner docstring): sha256 of the canonical JSON, 12 hex digits."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- load and expand ----------------------------------------------------------------------
def test_each_setting_is_a_validated_variant_of_the_base_table(tmp_path):
    suite = load_suite(write(tmp_path, BASE + SETTINGS))
    assert [v.setting for v in suite.variants()] == ["wide", "pair"]
    wide, pair = suite.settings
    assert wide.problem_params == {"dim_x": 5, "dim_y": 3, "num_clients": 4}
    assert wide.capacities == (1.0, 1.0, 0.5, 0.5) and wide.rounds == 2
    assert wide.algorithms == ("fedavg", "fedmbo")
    assert pair.problem_params == {"dim_x": 3, "dim_y": 3, "num_clients": 2}
    assert pair.capacities == (1.0, 0.25) and pair.rounds == 1 and pair.algorithms == ("fedavg",)
    assert all(v.name == "tiny" and v.seeds == (0, 1) for v in suite.variants())


def test_expand_runs_every_setting_with_its_patched_problem(tmp_path):
    specs = expand(load_suite(write(tmp_path, BASE + SETTINGS)))
    # wide: 2 seeds x 2 algorithms; pair: 2 seeds x 1 algorithm; setting by setting
    assert [(s.setting, s.algorithm.name, s.seed) for s in specs] == [
        ("wide", "fedavg", 0),
        ("wide", "fedmbo", 0),
        ("wide", "fedavg", 1),
        ("wide", "fedmbo", 1),
        ("pair", "fedavg", 0),
        ("pair", "fedavg", 1),
    ]
    assert len({s.run_id for s in specs}) == len(specs)
    for spec in specs:
        config = spec.config()
        assert config["setting"] == spec.setting
        assert spec.run_id == digest(config)
        dims = (config["problem"]["dim_x"], config["problem"]["num_clients"])
        assert dims == ((5, 4) if spec.setting == "wide" else (3, 2))
        assert config["problem"]["dim_y"] == 3 and "noise" in config["problem"]  # resolved
    assert {s.capacities for s in specs if s.setting == "pair"} == {(1.0, 0.25)}
    # each setting builds its own problem instance
    cache = ProblemCache()
    wide_problem, pair_problem = cache(specs[0]), cache(specs[-1])
    assert wide_problem is cache(specs[1])
    assert (wide_problem.num_clients, pair_problem.num_clients) == (4, 2)


def test_settings_with_the_same_patch_differ_by_name_only_in_the_run_id(tmp_path):
    text = BASE + "\n[settings.a]\nrounds = 2\n\n[settings.b]\nrounds = 2\n"
    specs = expand(load_suite(write(tmp_path, text)))
    a = [s for s in specs if s.setting == "a"]
    b = [s for s in specs if s.setting == "b"]
    assert len(a) == len(b) == 4
    for sa, sb in zip(a, b, strict=True):
        assert sa.run_id != sb.run_id
        assert {k: v for k, v in sa.config().items() if k != "setting"} == {
            k: v for k, v in sb.config().items() if k != "setting"
        }
        assert sa.stream_key == sb.stream_key  # same problem and capacities: common randomness


def test_a_suite_without_settings_keeps_setting_out_of_its_run_ids(tmp_path):
    suite = load_suite(write(tmp_path, BASE))
    assert suite.settings == () and suite.variants() == (suite,) and suite.setting == ""
    specs = expand(suite)
    assert len(specs) == 4
    for spec in specs:
        config = spec.config()
        assert spec.setting == "" and "setting" not in config
        assert spec.run_id == digest(config)
        assert set(config) == {
            "suite",
            "problem",
            "algorithm",
            "capacities",
            "seed",
            "rounds",
            "eval_every",
        }


def test_cli_algorithms_replace_a_settings_own_algorithms(tmp_path):
    suite = load_suite(write(tmp_path, BASE + SETTINGS), algorithm_names=["fedmbo"])
    assert [v.algorithms for v in suite.variants()] == [("fedmbo",), ("fedmbo",)]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("bogus = 1", r"unknown key settings\.bad\.bogus"),
        ("seeds = 3", r"unknown key settings\.bad\.seeds"),
        ("capacities = [1, 1.5, 0.5, 0.5]", r"settings\.bad: capacities\[1\] = 1\.5 is outside"),
        ("capacities = [1, 0.5]", r"settings\.bad: capacities has 2 entries but the problem has 4"),
        ("problem = { num_clients = 3 }", r"settings\.bad: capacities has 4 entries .* 3 clients"),
        ("problem = { dim_z = 1 }", r"settings\.bad: unknown parameter problem\.dim_z"),
        ("rounds = 0", r"settings\.bad: rounds = 0 must be an integer >= 1"),
        ('algorithms = ["nope"]', r"settings\.bad: algorithms\[0\] = 'nope' is not an algorithm"),
    ],
)
def test_errors_inside_a_setting_name_the_setting(tmp_path, patch, message):
    text = BASE + f"\n[settings.good]\nrounds = 1\n\n[settings.bad]\n{patch}\n"
    with pytest.raises(ValueError, match=message) as info:
        load_suite(write(tmp_path, text))
    assert "settings.bad" in str(info.value) and "\n" not in str(info.value)


def test_a_setting_must_be_a_table_with_a_safe_name(tmp_path):
    with pytest.raises(ValueError, match=r"settings\.odd must be a table"):
        load_suite(
            write(tmp_path, BASE.replace('name = "tiny"', 'name = "tiny"\nsettings = { odd = 1 }'))
        )
    with pytest.raises(ValueError, match="setting name 'a b' may use only"):
        load_suite(write(tmp_path, BASE + '\n[settings."a b"]\nrounds = 1\n'))


# -- through the command line --------------------------------------------------------------
def test_cli_runs_every_setting_and_writes_a_setting_column(tmp_path, capsys):
    text = BASE.replace("rounds = 2", "rounds = 1").replace("seeds = 2", "seeds = 1")
    text = text.replace('["fedavg", "fedmbo"]', '["fedavg"]') + SETTINGS
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "run", write(tmp_path, text), "--no-mlflow", "--no-progress", "--out", str(out)
    )
    assert code == 0, err
    assert "suite tiny" in stdout
    rows = read_rows(out / "results.csv")
    assert "setting" in rows[0]
    assert {r["setting"] for r in rows} == {"wide", "pair"}
    assert len({r["run_id"] for r in rows}) == 2
    assert sorted((r["setting"], r["round"]) for r in rows) == [
        ("pair", "0"),
        ("pair", "1"),
        ("wide", "0"),
        ("wide", "1"),
    ]
    assert len(list((out / "runs").glob("*.csv"))) == 2
    # the run config on disk names its setting
    configs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert sorted(c["setting"] for c in configs) == ["pair", "wide"]


def test_cli_refuses_a_malformed_setting_with_one_line(tmp_path, capsys):
    text = BASE + "\n[settings.broken]\ncapacities = [1, 2, 0.5, 0.5]\n"
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "run", write(tmp_path, text), "--no-mlflow", "--no-progress", "--out", str(out)
    )
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rabo-bench: error:")
    assert "settings.broken: capacities[1] = 2" in lines[0]
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("path", sorted(SUITES_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_suite_validates_under_every_preset(path):
    """Each suite in suites/ (and each of its settings) loads under every preset it defines,
    so a preset nobody ran in CI (cpu, paper) cannot hold a typo until hour five."""
    base = load_suite(str(path))
    for preset in (None, *base.presets):
        suite = load_suite(str(path), preset)
        assert expand(suite), f"{path.stem} {preset} has no runs"


def test_capacities_may_repeat_a_pattern_over_many_clients(tmp_path):
    text = BASE.replace("capacities = [1, 1, 0.5, 0.5]", "capacities = { repeat = [1, 0.5, 0.25] }")
    path = tmp_path / "repeat.toml"
    path.write_text(text)
    assert load_suite(str(path)).capacities == (1.0, 0.5, 0.25, 1.0)
    for bad, message in [("[]", "non-empty"), ("[1, 2]", "outside"), ("1", "non-empty")]:
        path.write_text(BASE.replace("[1, 1, 0.5, 0.5]", f"{{ repeat = {bad} }}"))
        with pytest.raises(ValueError, match=message):
            load_suite(str(path))
    path.write_text(BASE.replace("[1, 1, 0.5, 0.5]", "{ cycle = [1] }"))
    with pytest.raises(ValueError, match=r"unknown key capacities\.cycle"):
        load_suite(str(path))
