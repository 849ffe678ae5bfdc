"""The paper's claims, tested from saved results: paired gains over seeds (Omniglot Table II,
the effect of C_x* and the long-tail CIFAR-10 gains).

Every algorithm of one seed starts from the same (x0, y0) and sees common random numbers
(``engine/run.py``), so a claim "A above B" is tested on the per-seed differences
acc_A(seed) - acc_B(seed) of final test accuracy (percentage points): their mean and Student-t
95% interval over the seeds (:func:`rabo_bench.report.seeds.ci95`). A verdict needs the
interval to exclude 0 ("holds" / "reversed"); otherwise it is "not resolved".
"""

from __future__ import annotations

import json
import math

import pandas as pd

from rabo_bench.report.paper import CIFAR_GAIN, SUBMODEL_BASELINES, paper_table_ii
from rabo_bench.report.seeds import ci95

MATCHED = "-matched"  # a setting whose single-level baselines take one local step per round
# a setting that runs RABO alone for more rounds (until its curve flattens); its runs share the
# base setting's random streams (``RunSpec.stream_key`` leaves the setting and rounds out), so
# they pair seed by seed with the base setting's other methods
LONG = "-long"


def per_seed(finals: pd.DataFrame, setting: str, method: str) -> pd.Series:
    rows = finals[(finals["setting"] == setting) & (finals["algorithm"] == method)]
    return (100 * rows.set_index("seed")["accuracy"]).astype(float)


def paired_gain(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """(mean, 95% half-width, seeds) of a - b over the seeds both have."""
    return over_seeds(a - b)


def over_seeds(values: pd.Series) -> tuple[float, float, int]:
    """(mean, Student-t 95% half-width, seeds) of per-seed ``values`` (NaN dropped)."""
    values = values.dropna()
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    return float(values.mean()), float(ci95(values.std(ddof=1), n)) if n > 1 else math.nan, n


def verdict(mean: float, half: float, expect_positive: bool = True) -> str:
    if math.isnan(half):
        return "not resolved (one seed)"
    low, high = mean - half, mean + half
    if low > 0:
        return "holds" if expect_positive else "reversed"
    if high < 0:
        return "reversed" if expect_positive else "holds"
    return "not resolved (CI contains 0)"


def _cell(mean: float, half: float, n: int) -> str:
    return f"{mean:+.2f} ± {half:.2f} ({n} seeds)"


def claims_table(finals: pd.DataFrame) -> list[str]:
    """Markdown rows of the testable Table II claims for every setting the results hold."""
    paper = paper_table_ii()
    lines = [
        "| claim | setting | paper (points) | ours (mean ± 95% CI over seeds) | verdict |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    variants = (MATCHED, LONG)
    settings = [s for s in dict.fromkeys(finals["setting"]) if not str(s).endswith(variants)]
    for s in settings:
        rabo = per_seed(finals, s, "rabo")
        if rabo.empty:
            continue
        comparisons = [
            (f"RABO above {b}", rabo, per_seed(finals, s, b), "rabo", b) for b in SUBMODEL_BASELINES
        ]
        mean = _baselines_mean(finals, s)
        comparisons += [
            ("RABO above the sub-model mean", rabo, mean, "rabo", None),
            ("RAFBO above the sub-model mean", per_seed(finals, s, "rafbo"), mean, "rafbo", None),
            ("RAFBO below RABO (paper: slightly)", per_seed(finals, s, "rafbo"), rabo, "rafbo",
             "rabo"),
            ("FedMBO (full) above RABO", per_seed(finals, s, "fedmbo"), rabo, "fedmbo", "rabo"),
            ("Dist-ProtoNet (full) above RABO", per_seed(finals, s, "protonet"), rabo,
             "protonet", "rabo"),
        ]  # fmt: skip
        comparisons += _at_one_local_step(finals, s)
        comparisons += _longer_horizon(finals, s, mean)
        for name, a, b, pa, pb in comparisons:  # rows with a side that did not run are left out
            if a.empty or b.dropna().empty:
                continue
            mean, half, n = paired_gain(a, b)
            reported = _paper_gain(paper, s, pa, pb)
            expect = not name.startswith("RAFBO below")
            shown = f"{reported:+.2f}" if reported is not None else "n/a"
            ours = _cell(mean, half, n)
            lines.append(f"| {name} | {s} | {shown} | {ours} | {verdict(mean, half, expect)} |")
    return lines


def horizon(finals: pd.DataFrame, setting: str) -> int:
    """The last round the runs of ``setting`` reached (0 without runs)."""
    rounds = finals.loc[finals["setting"] == setting, "round"]
    return int(rounds.max()) if len(rounds) else 0


def same_horizon(finals: pd.DataFrame, setting: str, rounds: int) -> str:
    """Which of ``<setting>-matched`` itself, ``setting`` and ``<setting>-long`` ran RABO for
    ``rounds`` rounds, in that order ("" if none): the bilevel runs that pair with a
    ``-matched`` variant of that horizon."""
    rabo = finals[finals["algorithm"] == "rabo"]
    sources = (f"{setting}{MATCHED}", setting, f"{setting}{LONG}")
    return next((s for s in sources if horizon(rabo, s) == rounds), "")


def _at_one_local_step(finals: pd.DataFrame, setting: str) -> list[tuple]:
    """RABO against the mean of the sub-model baselines at one local step per round
    (``<setting>-matched``: as many backbone updates per round), at equal rounds: RABO from the
    matched setting itself, else from ``setting`` or ``<setting>-long``, whichever ran as many
    rounds as the matched runs. Where none did, the row names both horizons."""
    matched = f"{setting}{MATCHED}"
    rounds = horizon(finals, matched)
    if not rounds:
        return []
    mean_matched = _baselines_mean(finals, matched)
    source = same_horizon(finals, setting, rounds)
    if source:
        name = f"RABO above the sub-model mean at one local step, both at {rounds} rounds"
        where = matched if source == matched else f"{source}, {matched}"
        return [(f"{name} ({where})", per_seed(finals, source, "rabo"), mean_matched, "rabo",
                 None)]  # fmt: skip
    name = (f"RABO at {horizon(finals, setting)} rounds above the sub-model mean at one local "
            f"step at {rounds} rounds ({matched})")  # fmt: skip
    return [(name, per_seed(finals, setting, "rabo"), mean_matched, "rabo", None)]


def _baselines_mean(finals: pd.DataFrame, setting: str) -> pd.Series:
    """Per seed, the mean of the sub-model baselines in ``setting`` (empty unless all ran)."""
    runs = pd.concat([per_seed(finals, setting, b) for b in SUBMODEL_BASELINES], axis=1)
    if runs.shape[1] < len(SUBMODEL_BASELINES) or runs.empty:
        return pd.Series(dtype=float)
    return runs.mean(axis=1)


def _longer_horizon(finals: pd.DataFrame, setting: str, mean: pd.Series) -> list[tuple]:
    """The comparisons with RABO at its ``<setting>-long`` horizon, where that setting ran:
    against each sub-model baseline, their mean and Dist-ProtoNet at ``setting``'s horizon;
    FedMBO against it, at the same longer horizon where FedMBO ran the ``-long`` setting too
    (else at ``setting``'s); and RAFBO, where it ran the ``-long`` setting, against RABO and the
    sub-model mean there (a 120-round RAFBO against a longer RABO would mix horizons)."""
    long = f"{setting}{LONG}"
    rabo = per_seed(finals, long, "rabo")
    if rabo.empty:
        return []
    rounds = horizon(finals, long)
    label = f"RABO at {rounds} rounds ({long})"
    rows = [(f"{label} above {b}", rabo, per_seed(finals, setting, b), "rabo", b)
            for b in SUBMODEL_BASELINES]  # fmt: skip
    rows.append((f"{label} above the sub-model mean", rabo, mean, "rabo", None))
    rows.append((f"Dist-ProtoNet (full) above {label}", per_seed(finals, setting, "protonet"),
                 rabo, "protonet", "rabo"))  # fmt: skip
    fedmbo = per_seed(finals, long, "fedmbo")
    both = f"both at {rounds} rounds ({long})"
    name = f"FedMBO (full) above RABO, {both}"
    if fedmbo.empty:
        fedmbo, name = per_seed(finals, setting, "fedmbo"), f"FedMBO (full) above {label}"
    rows.append((name, fedmbo, rabo, "fedmbo", "rabo"))
    rafbo = per_seed(finals, long, "rafbo")
    if rafbo.empty:
        return rows
    return [*rows, (f"RAFBO below RABO (paper: slightly), {both}", rafbo, rabo, "rafbo", "rabo"),
            (f"RAFBO at {rounds} rounds ({long}) above the sub-model mean", rafbo, mean, "rafbo",
             None)]  # fmt: skip


def cifar_claims_table(finals: pd.DataFrame) -> list[str]:
    """Markdown rows of the CIFAR-LT claims (SPEC §7.2: RABO +9.97 and RAFBO +5.53 points over
    the mean of the sub-model baselines), paired over the seeds, and the comparisons with the
    full-model references; none (no table) where the methods of ``finals`` test no claim."""
    rows = []
    acc = {m: per_seed(finals, "", m) for m in dict.fromkeys(finals["algorithm"])}
    empty = pd.Series(dtype=float)
    baselines = pd.concat([acc.get(b, empty) for b in SUBMODEL_BASELINES], axis=1)
    mean_baselines = baselines.mean(axis=1) if baselines.shape[1] == 4 else empty
    comparisons = [
        ("RABO above the sub-model mean", "rabo", mean_baselines, CIFAR_GAIN["rabo"], True),
        ("RAFBO above the sub-model mean", "rafbo", mean_baselines, CIFAR_GAIN["rafbo"], True),
        ("RAFBO below RABO", "rafbo", acc.get("rabo", empty), None, False),
        ("RABO above FedAvg without tuning (full)", "rabo", acc.get("fedavg", empty), None, True),
        ("FedMBO (full) above RABO", "fedmbo", acc.get("rabo", empty), None, True),
    ]
    for name, method, other, reported, expect in comparisons:
        ours = acc.get(method, empty)
        if ours.empty or other.dropna().empty:
            continue
        mean, half, n = paired_gain(ours, other)
        shown = f"{reported:+.2f}" if reported is not None else "n/a"
        rows.append(
            f"| {name} | {shown} | {_cell(mean, half, n)} | {verdict(mean, half, expect)} |"
        )
    if not rows:
        return []
    return [
        "| claim | paper (points) | ours (mean ± 95% CI over seeds) | verdict |",
        "| --- | ---: | ---: | --- |",
        *rows,
    ]


def coverage_claims_table(finals: pd.DataFrame) -> list[str]:
    """Markdown rows of "the larger C_x*, the better" (Fig. 4 right) for each method of a
    coverage sweep (settings ``c<C>``), paired over the seeds: the gain from the smallest to the
    largest C_x*, and the least-squares slope of final accuracy in C_x* (points per client)
    fitted per seed; and, where the sweep has its control (setting ``full``: every client holds
    the whole model), the whole model against the largest C_x*: what the masks cost."""
    lines = [
        "| claim | method | ours (mean ± 95% CI over seeds) | verdict |",
        "| --- | --- | ---: | --- |",
    ]
    sweep = finals[finals["setting"].astype(str).str.fullmatch(r"c\d+")]
    for method in dict.fromkeys(sweep["algorithm"]):
        rows = sweep[sweep["algorithm"] == method]
        acc = 100 * rows.pivot_table(index="seed", columns="setting", values="accuracy")
        acc.columns = [int(c[1:]) for c in acc.columns]
        acc = acc[sorted(acc.columns)].dropna()
        if acc.shape[1] < 2:
            continue
        low, high = acc.columns[0], acc.columns[-1]
        centred = acc.columns.to_numpy(dtype=float) - acc.columns.to_numpy(dtype=float).mean()
        slopes = acc.to_numpy() @ centred / (centred @ centred)
        claims = [
            (f"C_x* = {high} above C_x* = {low}", paired_gain(acc[high], acc[low])),
            (f"slope in C_x* = {low}..{high} (points per client)",
             over_seeds(pd.Series(slopes, index=acc.index))),
        ]  # fmt: skip
        full = per_seed(finals, "full", method)
        if not full.empty:
            claims.append((f"whole model above C_x* = {high}", paired_gain(full, acc[high])))
        for name, (mean, half, n) in claims:
            lines.append(f"| {name} | {method} | {_cell(mean, half, n)} | {verdict(mean, half)} |")
    return lines


def _paper_gain(paper, setting: str, a: str, b: str | None) -> float | None:
    """The paper's gain of a over b (None: over the mean of the sub-model baselines)."""
    if setting not in paper.get(a, {}):
        return None
    others = [b] if b is not None else list(SUBMODEL_BASELINES)
    values = [paper[o][setting] for o in others if setting in paper.get(o, {})]
    return paper[a][setting] - sum(values) / len(values) if values else None


def plateau_table(results: pd.DataFrame) -> list[str]:
    """The section "Plateau": has each curve flattened? Per (setting, algorithm): the change of the
    mean accuracy over the seeds across the last fifth of the rounds (from the first evaluated round
    at or after 0.8 Q, else the last one before Q, to Q), against the 95% CI over the seeds at Q
    (issue 14: "flat" when within it). Like with like: the intermediate points are measured on the
    curve's test subset, so the value at Q is the same subset's (``curve_accuracy`` in the final
    details); runs that predate it fall back to the whole test set, marked with a dagger. Outside
    the CI the verdict says which way the curve moves. The last column, for information beside the
    verdict: the change's own 95% CI, paired over the seeds (does the curve still move?). A curve
    that moves where its method also ran ``<setting>-long`` names that longer run, and a line under
    the table counts the flat curves among those with a verdict (two seeds or more)."""
    lines = [
        "## Plateau: the change over the last fifth of the rounds",
        "",
        "The change of the seed-mean accuracy over the last fifth of the rounds against the 95% "
        "CI over the seeds at the last round Q ('flat' when within it); the last column, for "
        "information, is the change's own 95% CI, paired over the seeds.",
        "",
        "| setting | method | rounds | change over the last fifth (points) | 95% CI at Q | flat? "
        "| the change's 95% CI, paired |",
        "| --- | --- | --- | ---: | ---: | --- | ---: |",
    ]
    mixed, flats = False, []
    groups = results.groupby(["setting", "algorithm"], sort=False)
    for (setting, algorithm), rows in groups:
        acc = 100 * rows.pivot_table(index="round", columns="seed", values="accuracy")
        last = int(acc.index.max())
        curve = _curve_accuracy(rows[rows["round"] == last])
        if curve is not None:
            acc.loc[last] = 100 * curve
        mixed |= curve is None
        earlier = acc.index[acc.index < last]
        late = earlier[earlier >= 0.8 * last]
        start = int(late.min() if len(late) else earlier.max())
        change, paired, _ = over_seeds(acc.loc[last] - acc.loc[start])
        spread = acc.loc[last].dropna()
        half = float(ci95(spread.std(ddof=1), len(spread))) if len(spread) > 1 else math.nan
        flat = _flat(change, half)
        if not math.isnan(half):  # one seed gives no verdict to count
            flats.append(flat == "yes")
        if flat.startswith("no") and (f"{setting}{LONG}", algorithm) in groups.groups:
            flat += f"; run on in `{setting}{LONG}`"
        mark = "" if curve is not None else " †"
        lines.append(
            f"| {setting} | {algorithm} | {start} -> {last}{mark} | {change:+.2f} | {half:.2f} "
            f"| {flat} | {paired:.2f} |"
        )
    if flats:
        lines += ["", f"{sum(flats)} of {len(flats)} curves flat."]
    if mixed:
        lines += [
            "",
            "† At Q the whole test set, before it the curve's subset (these runs predate "
            "`curve_accuracy`): the change mixes two test sets, so it carries the subset's "
            "sampling error as well.",
        ]
    return lines


def _flat(change: float, half: float) -> str:
    """The plateau verdict: "yes" within the CI; outside it, which way the curve still moves.
    Either way is a reason to run longer: a fall can be a dip in a curve that still rises
    (CIFAR-LT FedRolex fell 0.40 points from round 240 to 300, then rose 2 by round 480)."""
    if math.isnan(half):
        return "n/a (one seed)"
    if abs(change) <= half:
        return "yes"
    return "no (rising)" if change > 0 else "no (falling)"


def _curve_accuracy(last: pd.DataFrame) -> pd.Series | None:
    """Per seed, the accuracy on the curve's test subset at the last round, when every seed's
    final details record it (``problems.base.with_curve_accuracy``)."""
    if "details" not in last:
        return None
    values = {}
    for seed, text in zip(last["seed"], last["details"], strict=True):
        value = json.loads(text).get("curve_accuracy") if isinstance(text, str) and text else None
        if value is None:
            return None
        values[seed] = value
    return pd.Series(values)
