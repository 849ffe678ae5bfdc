"""How a suite's layers stack (rabo_bench.engine.suite_layers): override groups (``all``,
``bilevel``, ``single_level``) under per-algorithm tables, a later layer's group over an earlier
layer's per-algorithm value, and ``--set`` values on top of the preset and the settings, checked
like the file and blamed on ``(--set)``.

No data needed: a tiny suite of the synthetic "quadratic" problem written to tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rabo_bench import algorithms
from rabo_bench.algorithms import Algorithm
from rabo_bench.engine.suite import Suite, load_suite
from rabo_bench.engine.suite_file import parse_assignment

BASE = """\
name = "tiny"
rounds = 2
algorithms = ["fedavg", "static", "rabo", "fedmbo"]
capacities = [1, 0.5, 0.5]

[problem]
name = "quadratic"
dim_x = 3
dim_y = 3
num_clients = 3
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return str(path)


def inner(suite: Suite) -> dict[str, tuple[int, float]]:
    """Algorithm name -> (inner steps, inner lr) as the suite resolves it."""
    return {name: (suite.algorithm(name).inner.steps, suite.algorithm(name).inner.lr)
            for name in suite.algorithms}  # fmt: skip


def line_of(text: str, needle: str) -> int:
    return next(k for k, line in enumerate(text.splitlines(), 1) if needle in line)


# -- override groups ------------------------------------------------------------------------
def test_groups_split_the_registry_by_outer_step():
    groups = algorithms.groups()
    assert groups["all"] == tuple(sorted(algorithms.available()))
    assert groups["bilevel"] == (
        "aggitd",
        "fedbioacc",
        "fedmbo",
        "fednest",
        "lfednest",
        "rabo",
        "rafbo",
        "simfbo",
    )
    assert set(groups["bilevel"]) | set(groups["single_level"]) == set(groups["all"])
    assert not set(groups["bilevel"]) & set(groups["single_level"])


def test_a_group_name_cannot_be_registered():
    rabo = algorithms.get("rabo")
    with pytest.raises(ValueError, match="taken by an override group"):
        algorithms.register(Algorithm("all", "", rabo.policy, rabo.inner, rabo.outer))


def test_in_one_layer_all_lies_under_a_group_under_the_algorithms_own_table(tmp_path):
    text = BASE + (
        "[overrides]\n"
        "all = { inner = { steps = 3, lr = 0.3 } }\n"
        "single_level = { inner = { steps = 4 } }\n"
        "static = { inner = { steps = 7 } }\n"
        "bilevel = { outer = { lr = 0.5 } }\n"
    )
    suite = load_suite(write(tmp_path, text))
    assert inner(suite) == {
        "fedavg": (4, 0.3),
        "static": (7, 0.3),
        "rabo": (3, 0.3),
        "fedmbo": (3, 0.3),
    }
    assert suite.algorithm("rabo").outer.lr == suite.algorithm("fedmbo").outer.lr == 0.5


def test_a_later_layers_group_beats_an_earlier_layers_algorithm(tmp_path):
    text = BASE + (
        "[overrides]\n"
        "static = { inner = { steps = 7, lr = 0.2 } }\n"
        "[presets.smoke]\n"
        "overrides.single_level = { inner = { steps = 1 } }\n"
        "[settings.long]\n"
        "overrides.all = { inner = { steps = 9 } }\n"
    )
    path = write(tmp_path, text)
    plain, smoke = load_suite(path), load_suite(path, "smoke")
    assert inner(plain)["static"] == (7, 0.2) and inner(plain.settings[0])["static"] == (9, 0.2)
    assert inner(smoke)["static"] == (1, 0.2) and inner(smoke.settings[0])["static"] == (9, 0.2)
    assert inner(smoke)["rabo"] == (10, 0.01)  # the registry's: single_level is not rabo's


def test_groups_and_tables_written_out_resolve_to_the_same_runs(tmp_path):
    from rabo_bench.engine.run import expand

    grouped = BASE + (
        "[overrides]\nall = { inner = { steps = 3 } }\nrabo = { outer = { lr = 0.5 } }\n"
    )
    written = BASE + (
        "[overrides]\nfedavg = { inner = { steps = 3 } }\nstatic = { inner = { steps = 3 } }\n"
        "fedmbo = { inner = { steps = 3 } }\n"
        "rabo = { inner = { steps = 3 }, outer = { lr = 0.5 } }\n"
    )
    ids = [[s.run_id for s in expand(load_suite(write(tmp_path, t)))] for t in (grouped, written)]
    assert ids[0] == ids[1]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("all = { outer = { lr = 0.1 } }", "overrides.all: unknown setting fedavg.outer.lr"),
        ("bilevel = 3", "overrides.bilevel must be a table, got 3"),
        ("everyone = { inner = { steps = 1 } }", "unknown algorithm 'everyone'; choose from"),
        ("single_level = { inner = { stepz = 1 } }", "overrides.single_level: unknown setting"),
    ],
)
def test_a_bad_group_block_names_the_group_and_its_line(tmp_path, table, message):
    text = BASE + "[presets.smoke]\nrounds = 1\n[presets.smoke.overrides]\n" + table + "\n"
    with pytest.raises(ValueError) as info:
        load_suite(write(tmp_path, text))
    assert f"suite.toml:{line_of(text, table)}: " in str(info.value)
    assert message in str(info.value)


# -- --set ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("rounds=5", {"rounds": 5}),
        ("problem.dim_x = 4", {"problem": {"dim_x": 4}}),
        ("overrides.rabo.outer.lr=0.1", {"overrides": {"rabo": {"outer": {"lr": 0.1}}}}),
        ('settings."a.b".rounds=2', {"settings": {"a.b": {"rounds": 2}}}),
        ('problem.name="logistic"', {"problem": {"name": "logistic"}}),
        ("capacities=[1, 0.5]", {"capacities": [1, 0.5]}),
        (
            "overrides.all={ inner = { steps = 2 } }",
            {"overrides": {"all": {"inner": {"steps": 2}}}},
        ),
    ],
)
def test_set_parses_a_dotted_key_and_a_toml_value(text, table):
    assert parse_assignment(text) == table


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rounds", "give one KEY=VALUE"),
        ("rounds=5\nseeds=2", "give one KEY=VALUE"),
        ("rounds=", "is not KEY=VALUE with a TOML value"),
        ("problem.name=logistic", "strings need quotes"),
        ("=5", "is not KEY=VALUE"),
    ],
)
def test_set_refuses_what_is_not_one_toml_pair(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_assignment(text)
    assert "\n" not in str(info.value)


def test_set_comes_after_the_preset_and_the_settings_and_merges_tables(tmp_path):
    text = BASE + (
        "[presets.smoke]\nrounds = 1\nproblem = { dim_y = 2 }\n"
        "[settings.long]\nrounds = 8\n[settings.wide]\nproblem = { dim_x = 6 }\n"
    )
    changes = [{"rounds": 5}, {"problem": {"dim_x": 4}}, {"settings": {"wide": {"rounds": 6}}}]
    suite = load_suite(write(tmp_path, text), "smoke", changes=changes)
    for variant in (suite, *suite.settings):
        assert variant.problem_params == {"dim_x": 4, "dim_y": 2, "num_clients": 3}
    assert [(v.setting, v.rounds) for v in (suite, *suite.settings)] == [
        ("", 5),
        ("long", 5),
        ("wide", 6),  # --set settings.wide.rounds is more specific than --set rounds
    ]


def test_later_sets_win_and_the_shorthand_options_come_last(tmp_path):
    path = write(tmp_path, BASE)
    changes = [{"rounds": 5}, {"rounds": 6}, {"seeds": 4}]
    assert load_suite(path, changes=changes).rounds == 6
    suite = load_suite(path, changes=changes, rounds=7, seeds=2)
    assert (suite.rounds, suite.seeds) == (7, (0, 1))


def test_set_reaches_every_algorithm_of_a_group(tmp_path):
    changes = [{"overrides": {"single_level": {"inner": {"steps": 2}}}}]
    suite = load_suite(write(tmp_path, BASE), changes=changes)
    assert inner(suite) == {"fedavg": (2, 0.01), "static": (2, 0.01), "rabo": (10, 0.01),
                            "fedmbo": (10, 0.01)}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("rounds=0", "rounds = 0 must be an integer >= 1"),
        ("bogus=1", "unknown key bogus; allowed keys are"),
        ('name="other"', "unknown key name;"),
        ("presets.smoke.rounds=1", "unknown key presets;"),
        ("problem.dim_z=1", "unknown parameter problem.dim_z"),
        ("capacities=[1, 1.5, 1]", "capacities[1] = 1.5 is outside (0, 1]"),
        ("overrides.rabo.inner.stepz=1", "overrides.rabo: unknown setting rabo.inner.stepz"),
        ("overrides.nope.inner.steps=1", "overrides.nope: unknown algorithm 'nope'"),
        ("overrides.all.outer.lr=0.1", "overrides.all: unknown setting fedavg.outer.lr"),
        ("settings.x.seeds=1", "unknown key settings.x.seeds"),
        ('settings."a b".rounds=1', "setting name 'a b' may use only"),
        ('algorithms=["nope"]', "algorithms[0] = 'nope' is not an algorithm"),
    ],
)  # fmt: skip
def test_a_bad_set_is_blamed_on_the_command_line(tmp_path, change, message):
    with pytest.raises(ValueError) as info:
        load_suite(write(tmp_path, BASE), changes=[parse_assignment(change)])
    text = str(info.value)
    assert "suite.toml (--set): " in text and message in text and "\n" not in text


def test_a_count_mismatch_from_the_command_line_names_it(tmp_path):
    with pytest.raises(ValueError) as info:
        load_suite(write(tmp_path, BASE), changes=[{"problem": {"num_clients": 2}}])
    text = str(info.value)
    assert f"suite.toml:{line_of(BASE, 'capacities =')}: capacities has 3 entries" in text
    assert "the problem has 2 clients (problem.num_clients, --set)" in text


def test_a_file_error_is_not_blamed_on_the_command_line(tmp_path):
    text = BASE.replace("dim_y = 3", "dim_y = 0")
    with pytest.raises(ValueError) as info:
        load_suite(write(tmp_path, text), changes=[{"problem": {"dim_x": 4}}])
    assert f"suite.toml:{line_of(text, 'dim_y = 0')}: problem.dim_y = 0" in str(info.value)
    assert "(--set)" not in str(info.value)
