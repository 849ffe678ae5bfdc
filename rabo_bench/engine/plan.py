"""``run --dry-run``: the resolved runs of a command, what each still needs, and how long that
should take, without computing anything.

A run is ``done`` (its file is in the output folder), ``resume`` (a checkpoint holds its first
rounds) or ``todo``. The time estimate uses the pace measured in the same folder: the engine
seconds per round (``wall_time_s`` / rounds, evaluation excluded) of the finished runs of the
same (setting, algorithm), averaged; a pair with no finished run is reported as not timed.
With ``--jobs N`` the wall time is about the estimate over N.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rabo_bench.engine.checkpoint import checkpoint_file, saved_round
from rabo_bench.engine.results import read_rows, run_file
from rabo_bench.engine.run import RunSpec


def _paces(out: Path, specs: list[RunSpec]) -> dict[tuple[str, str], float]:
    """Seconds per round of the finished runs in ``out``, per (setting, algorithm)."""
    seen: dict[tuple[str, str], list[float]] = defaultdict(list)
    for spec in specs:
        path = run_file(out, spec.run_id)
        if path.exists():
            last = read_rows(path)[-1]
            if last.get("wall_time_s") and int(last["round"]) > 0:
                pace = float(last["wall_time_s"]) / int(last["round"])
                seen[(spec.setting, spec.algorithm.name)].append(pace)
    return {key: sum(v) / len(v) for key, v in seen.items()}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_plan(specs: list[RunSpec], out: Path) -> str:
    """The dry run's report: one line per run, then the totals and the time estimate."""
    specs = list({spec.run_id: spec for spec in specs}.values())
    paces = _paces(out, specs)
    lines = [f"{'run id':12}  {'setting':14}  {'method':10}  seed  rounds  status"]
    left: dict[tuple[str, str], int] = defaultdict(int)
    counts = {"done": 0, "resume": 0, "todo": 0}
    for spec in specs:
        if run_file(out, spec.run_id).exists():
            status = "done"
        elif checkpoint_file(out, spec.run_id).exists():
            start = saved_round(out, spec.run_id)
            status = f"resume from round {start}"
            left[(spec.setting, spec.algorithm.name)] += spec.rounds - start
        else:
            status = "todo"
            left[(spec.setting, spec.algorithm.name)] += spec.rounds
        counts[status.split()[0]] += 1
        lines.append(
            f"{spec.run_id:12}  {spec.setting or '-':14}  {spec.algorithm.name:10}  "
            f"{spec.seed:4}  {spec.rounds:6}  {status}"
        )
    timed = {key: rounds * paces[key] for key, rounds in left.items() if key in paces}
    untimed = sorted(" ".join(k).strip() for k in left if k not in paces)
    lines += [
        "",
        f"{len(specs)} runs: {counts['done']} done, {counts['resume']} to resume, "
        f"{counts['todo']} to run; {sum(left.values())} rounds to compute",
    ]
    if timed:
        lines.append(
            f"estimated engine time for the timed ones: {_duration(sum(timed.values()))} "
            "(the pace of this folder's finished runs; about that over N with --jobs N)"
        )
    if untimed:
        lines.append(f"not timed (no finished run of theirs in this folder): {', '.join(untimed)}")
    return "\n".join(lines)
