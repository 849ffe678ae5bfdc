"""The run ids of the shipped suites are pinned: every suite in suites/, under no preset and under
each of its presets, every setting, algorithm and seed resolves to the run id recorded in
``shipped_run_ids.json``. A run id is the hash of the resolved run config (suite, problem with
every parameter, algorithm.to_dict(), capacities, seed, rounds, eval_every), so this test fails
whenever a change to a suite file, to the suite loader (presets, settings, override groups) or
to a default moves a run, which would orphan the committed results in results/.

The record was made from the suites as they were before override groups existed (d2f9a88), so
the rewritten suites are proved to resolve to the same runs. After a deliberate change, rewrite
the record with ``python -m tests.unit.test_shipped_run_ids`` and say in the commit why the runs
moved.
"""

from __future__ import annotations

import json
from pathlib import Path

from rabo_bench.engine.run import expand
from rabo_bench.engine.suite import SUITES_DIR, load_suite

RECORD = Path(__file__).with_name("shipped_run_ids.json")


def shipped_run_ids() -> dict[str, list[str]]:
    """``suite/preset/setting/algorithm`` ("-" for none) -> the run ids of its seeds, in order."""
    ids: dict[str, list[str]] = {}
    for path in sorted(SUITES_DIR.glob("*.toml")):
        for preset in (None, *load_suite(str(path)).presets):
            for spec in expand(load_suite(str(path), preset)):
                parts = (path.stem, preset or "-", spec.setting or "-", spec.algorithm.name)
                ids.setdefault("/".join(parts), []).append(spec.run_id)
    return ids


def test_every_shipped_run_keeps_its_run_id():
    recorded = json.loads(RECORD.read_text())
    now = shipped_run_ids()
    moved = sorted(k for k in recorded.keys() & now.keys() if recorded[k] != now[k])
    assert not moved, f"{len(moved)} run groups changed their run ids, e.g. {moved[:5]}"
    assert sorted(now.keys() - recorded.keys()) == [], "new runs: rewrite the record"
    assert sorted(recorded.keys() - now.keys()) == [], "runs gone: rewrite the record"


if __name__ == "__main__":
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(shipped_run_ids().items())]
    RECORD.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one line per run group
    print(f"wrote {RECORD}")
