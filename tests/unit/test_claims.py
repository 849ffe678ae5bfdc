"""The paired claim test and the plateau check of the Omniglot report, on hand-made results
whose answers are known (Student-t quantiles from scipy)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from rabo_bench.report.claims import (
    cifar_claims_table,
    claims_table,
    coverage_claims_table,
    paired_gain,
    plateau_table,
    verdict,
)
from rabo_bench.report.omniglot import orderings
from rabo_bench.report.paper import SUBMODEL_BASELINES


def test_paired_gain_is_the_mean_and_t_interval_of_per_seed_differences():
    a = pd.Series([60.0, 62.0, 64.0], index=[0, 1, 2])
    b = pd.Series([50.0, 53.0, 53.0], index=[0, 1, 2])  # differences 10, 9, 11
    mean, half, n = paired_gain(a, b)
    assert (mean, n) == (10.0, 3)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert verdict(mean, half) == "holds"
    assert verdict(-mean, half) == "reversed"
    assert verdict(0.5, 2.0).startswith("not resolved")
    assert verdict(-mean, half, expect_positive=False) == "holds"
    assert paired_gain(a[:1], b[:1])[2] == 1 and verdict(*paired_gain(a[:1], b[:1])[:2]).endswith(
        "(one seed)"
    )


HEADERS = ("| setting", "| ---")


def _rows(table: list[str]) -> list[str]:
    """The plateau section's table rows (below its heading, text and column header)."""
    return [line for line in table if line.startswith("| ") and not line.startswith(HEADERS)]


def test_plateau_compares_the_last_fifth_with_the_seed_interval():
    rows = []
    for seed, (late, last) in enumerate([(0.70, 0.71), (0.72, 0.72), (0.74, 0.73)]):
        for q, acc in ((0, 0.4), (40, 0.6), (50, late), (60, last)):
            rows.append({"setting": "s", "algorithm": "rabo", "seed": seed, "round": q,
                         "accuracy": acc})  # fmt: skip
    line = _rows(plateau_table(pd.DataFrame(rows)))[0]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "50 -> 60 †"  # the first evaluated round at or after 0.8 Q
    assert float(cells[3]) == pytest.approx(0.0, abs=1e-9)  # +1, 0, -1 points: mean 0
    assert cells[5] == "yes"
    # the change's own interval, paired over the seeds: changes +1, 0, -1 (sd 1)
    assert cells[6] == f"{stats.t.ppf(0.975, 2) / math.sqrt(3):.2f}"
    assert "1 of 1 curves flat." in plateau_table(pd.DataFrame(rows))
    for shift, word in ((+0.05, "no (rising)"), (-0.05, "no (falling)")):  # 5 points, CI ~2.5
        moved = pd.DataFrame(rows)
        moved.loc[moved["round"] == 60, "accuracy"] += shift
        assert _rows(plateau_table(moved))[0].split("|")[6].strip() == word
        assert "0 of 1 curves flat." in plateau_table(moved)
    # a moving curve whose method ran on in the setting's -long variant names that run
    longer = pd.DataFrame(rows).assign(setting="s-long", round=lambda d: 2 * d["round"])
    moved = pd.concat([moved, longer], ignore_index=True)
    assert (
        _rows(plateau_table(moved))[0].split("|")[6].strip() == "no (falling); run on in `s-long`"
    )
    assert "1 of 2 curves flat." in plateau_table(moved)
    one_seed = plateau_table(moved[moved["seed"] == 0])  # no verdict, so nothing to count
    assert not any(line.endswith("curves flat.") for line in one_seed)


def test_plateau_reads_the_last_round_on_the_curves_test_subset():
    """The final row's accuracy is on the whole test set, the earlier ones on the curve's
    subset: the change to Q uses the subset's value at Q (``curve_accuracy``) when recorded."""
    rows = []
    for seed, (late, whole, subset) in enumerate([(0.70, 0.80, 0.71), (0.72, 0.82, 0.72)]):
        for q, acc, details in ((0, 0.4, ""), (50, late, ""), (60, whole, subset)):
            text = json.dumps({"curve_accuracy": details}) if details else ""
            rows.append({"setting": "s", "algorithm": "rabo", "seed": seed, "round": q,
                         "accuracy": acc, "details": text})  # fmt: skip
    table = plateau_table(pd.DataFrame(rows))
    cells = [c.strip() for c in _rows(table)[0].strip("|").split("|")]
    assert cells[2] == "50 -> 60" and float(cells[3]) == pytest.approx(0.5)  # +1, 0 points
    older = pd.DataFrame(rows).assign(details="")  # runs made before curve_accuracy existed
    table = plateau_table(older)
    assert _rows(table)[0].split("|")[3].strip() == "50 -> 60 †"
    assert float(_rows(table)[0].split("|")[4]) == pytest.approx(10.0)
    assert table[-1].startswith("†") and table[0].startswith("## Plateau")


def test_cifar_claims_pair_each_seed_with_the_mean_of_the_four_sub_model_baselines():
    accuracy = {  # per seed; the baselines' mean is 0.20, 0.21, 0.22
        "rabo": (0.30, 0.32, 0.31),
        "rafbo": (0.25, 0.26, 0.27),
        **{b: (0.20, 0.21, 0.22) for b in ("static", "oap", "fedrolex", "fiarse")},
    }
    finals = pd.DataFrame(
        [
            {"setting": "", "algorithm": a, "seed": seed, "accuracy": acc}
            for a, values in accuracy.items()
            for seed, acc in enumerate(values)
        ]
    )
    rows = {line.split("|")[1].strip(): line for line in cifar_claims_table(finals)[2:]}
    rabo = [c.strip() for c in rows["RABO above the sub-model mean"].strip("|").split("|")]
    mean, half, _ = paired_gain(pd.Series([30.0, 32.0, 31.0]), pd.Series([20.0, 21.0, 22.0]))
    assert rabo[1] == "+9.97" and rabo[2] == f"{mean:+.2f} ± {half:.2f} (3 seeds)"
    assert rabo[3] == "holds"  # differences 10, 11, 9
    assert rows["RAFBO below RABO"].rstrip(" |").endswith("holds")
    assert "FedMBO (full) above RABO" not in rows  # no FedMBO runs: no row


def test_rabo_at_its_longer_horizon_pairs_with_the_base_settings_other_methods():
    """A ``-long`` setting (RABO alone, more rounds) is compared seed by seed with the base
    setting's methods, and is not a setting of its own in the claims."""
    accuracy = {  # (setting, method) -> per seed; the baselines' mean is 0.80, 0.81, 0.82
        ("5w1s", "rabo"): (0.60, 0.62, 0.61),
        ("5w1s", "fedmbo"): (0.77, 0.78, 0.77),
        ("5w1s-long", "rabo"): (0.85, 0.85, 0.87),
        **{("5w1s", b): (0.80, 0.81, 0.82) for b in ("static", "oap", "fedrolex", "fiarse")},
    }
    finals = pd.DataFrame(
        [
            {"setting": s, "algorithm": a, "seed": seed, "accuracy": acc,
             "round": 500 if s.endswith("-long") else 120}
            for (s, a), values in accuracy.items()
            for seed, acc in enumerate(values)
        ]
    )  # fmt: skip
    rows = {line.split("|")[1].strip(): line for line in claims_table(finals)[2:]}
    assert all(line.split("|")[2].strip() == "5w1s" for line in rows.values())
    cells = [c.strip() for c in rows["RABO at 500 rounds (5w1s-long) above the sub-model mean"]
             .strip("|").split("|")]  # fmt: skip
    mean, half, _ = paired_gain(pd.Series([85.0, 85.0, 87.0]), pd.Series([80.0, 81.0, 82.0]))
    assert cells[3] == f"{mean:+.2f} ± {half:.2f} (3 seeds)" and mean == pytest.approx(14 / 3)
    fedmbo = rows["FedMBO (full) above RABO at 500 rounds (5w1s-long)"]
    assert fedmbo.rstrip(" |").endswith("reversed")  # FedMBO 8 points below in every seed
    assert "RABO above the sub-model mean" in rows  # the 120-round comparison stays
    # FedMBO at the longer horizon too: paired with RABO there, not at 120 rounds
    long_fedmbo = [("5w1s-long", "fedmbo", seed, acc, 500) for seed, acc in enumerate((0.9,) * 3)]
    columns = ["setting", "algorithm", "seed", "accuracy", "round"]
    both = pd.concat([finals, pd.DataFrame(long_fedmbo, columns=columns)], ignore_index=True)
    rows = {line.split("|")[1].strip(): line for line in claims_table(both)[2:]}
    assert "FedMBO (full) above RABO at 500 rounds (5w1s-long)" not in rows
    cells = [c.strip() for c in rows["FedMBO (full) above RABO, both at 500 rounds (5w1s-long)"]
             .strip("|").split("|")]  # fmt: skip
    mean, half, _ = paired_gain(pd.Series([90.0] * 3), pd.Series([85.0, 85.0, 87.0]))
    assert cells[3] == f"{mean:+.2f} ± {half:.2f} (3 seeds)" and mean == pytest.approx(13 / 3)


def test_coverage_claims_pair_the_sweep_ends_and_fit_a_slope_per_seed():
    """Accuracy = 50 + s C + seed offset, with slope s = 2, 3, 4 points per client for seeds
    0, 1, 2 (C = 1, 2, 3, 5: a missing C is fine): C = 5 above C = 1 by 4 s, slopes 2, 3, 4."""
    rows = [
        {
            "setting": f"c{c}",
            "algorithm": "rabo",
            "seed": seed,
            "accuracy": (50 + s * c + seed) / 100,
        }
        for seed, s in enumerate((2.0, 3.0, 4.0))
        for c in (1, 2, 3, 5)
    ]
    rows.append({"setting": "other", "algorithm": "rabo", "seed": 0, "accuracy": 0.9})  # ignored
    lines = coverage_claims_table(pd.DataFrame(rows))
    assert len(lines) == 4
    gain, slope = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    # the control: the whole model 1 point below C = 5 in every seed
    rows += [
        {
            "setting": "full",
            "algorithm": "rabo",
            "seed": seed,
            "accuracy": (49 + 5 * s + seed) / 100,
        }
        for seed, s in enumerate((2.0, 3.0, 4.0))
    ]
    control = coverage_claims_table(pd.DataFrame(rows))[4]
    assert control == "| whole model above C_x* = 5 | rabo | -1.00 ± 0.00 (3 seeds) | reversed |"
    assert gain[0] == "C_x* = 5 above C_x* = 1" and slope[0].startswith("slope in C_x* = 1..5")
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # per-seed slopes 2, 3, 4 (sd 1)
    assert gain[2] == f"+12.00 ± {4 * half:.2f} (3 seeds)" and gain[3] == "holds"
    assert slope[2] == f"+3.00 ± {half:.2f} (3 seeds)" and slope[3] == "holds"


def _finals(accuracy: dict, rounds: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"setting": s, "algorithm": a, "seed": seed, "accuracy": acc, "round": rounds[s]}
            for (s, a), values in accuracy.items()
            for seed, acc in enumerate(values)
        ]
    )


def test_the_matched_baselines_pair_with_rabo_at_their_own_horizon():
    """``-matched`` baselines (one local step a round) are compared with RABO at as many rounds:
    from the matched setting itself where RABO ran there, else from ``-long`` when they ran its
    500, from the base setting when they ran its 120, and with both horizons named when none
    matches."""
    accuracy = {  # the matched baselines' mean is 0.80, 0.81, 0.82
        ("5w1s", "rabo"): (0.60, 0.62, 0.61),
        ("5w1s-long", "rabo"): (0.85, 0.85, 0.87),
        **{("5w1s-matched", b): (0.80, 0.81, 0.82) for b in SUBMODEL_BASELINES},
    }
    long = {"5w1s": 120, "5w1s-long": 500, "5w1s-matched": 500}
    rows = {line.split("|")[1].strip(): line for line in claims_table(_finals(accuracy, long))[2:]}
    name = ("RABO above the sub-model mean at one local step, both at 500 rounds "
            "(5w1s-long, 5w1s-matched)")  # fmt: skip
    mean, half, _ = paired_gain(pd.Series([85.0, 85.0, 87.0]), pd.Series([80.0, 81.0, 82.0]))
    assert rows[name].split("|")[4].strip() == f"{mean:+.2f} ± {half:.2f} (3 seeds)"
    short = {**long, "5w1s-matched": 120}
    rows = {line.split("|")[1].strip(): line for line in claims_table(_finals(accuracy, short))[2:]}
    name = ("RABO above the sub-model mean at one local step, both at 120 rounds "
            "(5w1s, 5w1s-matched)")  # fmt: skip
    assert rows[name].rstrip(" |").endswith("reversed")  # RABO 20 points below in every seed
    other = {**long, "5w1s-matched": 240}
    names = [line.split("|")[1].strip() for line in claims_table(_finals(accuracy, other))[2:]]
    assert ("RABO at 120 rounds above the sub-model mean at one local step at 240 rounds "
            "(5w1s-matched)") in names  # fmt: skip
    # RABO run in the matched setting itself pairs there, before the -long run of equal rounds
    own = {**accuracy, ("5w1s-matched", "rabo"): (0.70, 0.71, 0.72)}
    rows = {line.split("|")[1].strip(): line for line in claims_table(_finals(own, long))[2:]}
    name = "RABO above the sub-model mean at one local step, both at 500 rounds (5w1s-matched)"
    assert rows[name].rstrip(" |").endswith("reversed")  # 10 points below in every seed


def test_orderings_count_only_the_settings_in_which_the_methods_ran():
    """A setting run for a few methods alone (20w5s: Dist-ProtoNet and RABO) neither counts as
    RABO beating sub-model baselines that did not run there nor enters those denominators."""
    every = ("rabo", "rafbo", "fedmbo", *SUBMODEL_BASELINES)
    ours = {m: {"5w1s": 50.0, "5w5s": 60.0} for m in every}
    ours["rabo"] = {"5w1s": 70.0, "5w5s": 55.0, "20w5s": 40.0}
    ours["protonet"] = {"20w5s": 45.0}
    lines = dict(line[2:].split(": ", 1) for line in orderings(ours))
    assert lines["RABO above every sub-model baseline"] == "1/2 (5w1s) settings (paper: 4/4)"
    assert lines["FedMBO (full) above RABO"] == "1/2 (5w5s) settings (paper: 4/4)"
    assert lines["FedMBO above Dist-MAML and Dist-ProtoNet"] == "0/0 settings (paper: 4/4)"


def test_dist_protonet_pairs_with_rabo_at_its_longer_horizon():
    """Table II's 20w5s claim (Dist-ProtoNet 0.60 points above RABO) is tested at RABO's
    ``-long`` horizon too; a setting run for the two alone gives their rows and no other."""
    accuracy = {
        ("20w5s", "rabo"): (0.40, 0.41, 0.42),
        ("20w5s", "protonet"): (0.60, 0.62, 0.61),
        ("20w5s-long", "rabo"): (0.50, 0.50, 0.53),
    }
    rounds = {"20w5s": 120, "20w5s-long": 500}
    rows = {
        line.split("|")[1].strip(): line for line in claims_table(_finals(accuracy, rounds))[2:]
    }
    cells = [c.strip() for c in rows["Dist-ProtoNet (full) above RABO at 500 rounds (20w5s-long)"]
             .strip("|").split("|")]  # fmt: skip
    mean, half, _ = paired_gain(pd.Series([60.0, 62.0, 61.0]), pd.Series([50.0, 50.0, 53.0]))
    assert cells[2] == "+0.60" and cells[3] == f"{mean:+.2f} ± {half:.2f} (3 seeds)"
    assert set(rows) == {"Dist-ProtoNet (full) above RABO",
                         "Dist-ProtoNet (full) above RABO at 500 rounds (20w5s-long)"}  # fmt: skip


def test_rafbo_pairs_with_rabo_only_at_equal_longer_horizons():
    """RAFBO's ``-long`` runs give "RAFBO below RABO" and RAFBO over the sub-model mean at that
    horizon; without them no RAFBO row mixes 120-round RAFBO with 500-round RABO."""
    accuracy = {  # the baselines' mean is 0.80, 0.81, 0.82
        ("5w1s", "rabo"): (0.60, 0.62, 0.61),
        ("5w1s", "rafbo"): (0.55, 0.56, 0.56),
        ("5w1s-long", "rabo"): (0.85, 0.85, 0.87),
        **{("5w1s", b): (0.80, 0.81, 0.82) for b in SUBMODEL_BASELINES},
    }
    rounds = {"5w1s": 120, "5w1s-long": 500}
    names = [line.split("|")[1].strip() for line in claims_table(_finals(accuracy, rounds))[2:]]
    assert [n for n in names if "RAFBO" in n and "500" in n] == []
    accuracy[("5w1s-long", "rafbo")] = (0.84, 0.83, 0.83)
    rows = {
        line.split("|")[1].strip(): line for line in claims_table(_finals(accuracy, rounds))[2:]
    }
    below = rows["RAFBO below RABO (paper: slightly), both at 500 rounds (5w1s-long)"]
    cells = [c.strip() for c in below.strip("|").split("|")]
    mean, half, _ = paired_gain(pd.Series([84.0, 83.0, 83.0]), pd.Series([85.0, 85.0, 87.0]))
    assert cells[3] == f"{mean:+.2f} ± {half:.2f} (3 seeds)" and mean == pytest.approx(-7 / 3)
    assert cells[4] == verdict(mean, half, expect_positive=False)
    over = rows["RAFBO at 500 rounds (5w1s-long) above the sub-model mean"]
    mean, _, _ = paired_gain(pd.Series([84.0, 83.0, 83.0]), pd.Series([80.0, 81.0, 82.0]))
    assert over.split("|")[4].strip().startswith(f"{mean:+.2f} ± ") and mean == pytest.approx(7 / 3)
