"""Turn a pytest-benchmark JSON from ``make bench`` into results/performance/: README.md (tables),
PROVENANCE.md (command, commit, machine, date, wall time) and the raw JSON beside them.

    python -m rabo_bench.report.performance BENCH_JSON OUTDIR [--gpu GPU_JSON] [--wall-seconds S]
    python -m rabo_bench.report.performance OUTDIR/benchmark.json OUTDIR --update PART_JSON

``--update`` re-reports after re-running some benchmarks (e.g. one test file): the benchmarks of
every test function in PART_JSON replace that function's benchmarks in BENCH_JSON, and the
merged ``benchmark.json`` lists under ``updates`` which tests came from which run, so
PROVENANCE.md names the commit, date and machine of each part.

``--gpu`` merges a run of the same benchmarks on a GPU machine: a CPU-vs-GPU table of the round
times at N = 100, 1000, 10000, labelled with the GPU model that run recorded. Times are medians
over the timed rounds; FLOP fractions are those tests/benchmarks/flops.py defines.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from rabo_bench.hypergrad import make_estimator
from rabo_bench.report.bench_json import Result, load, merge, provenance, results_of

ROUND_ALGORITHMS = ("rabo", "rafbo")
ENGINES = ("sequential", "vectorised")
GPU_CLIENTS = (100, 1000, 10000)
TARGET_SPEEDUP, TARGET_CLIENTS = 10, 1000
TARGET_OVERHEAD = 1.1  # issue 16: an estimate through Oracles / the plain-torch one
EXACT_MAX_DIM = make_estimator("exact").max_dim  # exact refuses larger d by design


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2g} %"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _find(results: list[Result], test: str, **match: Any) -> Result | None:
    for result in results:
        if result.test == test and all(result.info.get(k) == v for k, v in match.items()):
            return result
    return None


def _fraction(result: Result | None) -> float | None:
    return None if result is None else result.info.get("flop_fraction")


def _median(result: Result | None) -> float | None:
    return None if result is None else result.median


def speedups(results: list[Result]) -> dict[tuple[int, str], float]:
    """(N, algorithm) -> sequential median / vectorised median, where both ran."""
    out = {}
    for r in results:
        if r.test == "test_round" and r.info["engine"] == "vectorised":
            seq = _find(results, "test_round", engine="sequential", **_round_key(r))
            if seq is not None:
                out[(r.info["clients"], r.info["algorithm"])] = seq.median / r.median
    return out


def _round_key(result: Result) -> dict[str, Any]:
    return {"clients": result.info["clients"], "algorithm": result.info["algorithm"]}


def _peak_memory(cells: list[Result | None]) -> str:
    """The process's peak resident memory after these points (an upper bound for each)."""
    values = [c.info["peak_rss_gb"] for c in cells if c is not None and "peak_rss_gb" in c.info]
    return f"{max(values):.2f}" if values else "—"


def round_section(results: list[Result]) -> list[str]:
    gains = speedups(results)
    clients = sorted({r.info["clients"] for r in results if r.test == "test_round"})
    rows = []
    for n in clients:
        for algorithm in ROUND_ALGORITHMS:
            cells = [
                _find(results, "test_round", clients=n, algorithm=algorithm, engine=e)
                for e in ENGINES
            ]
            gain = gains.get((n, algorithm))
            rows.append(
                [str(n), algorithm]
                + [seconds(_median(c)) for c in cells]
                + ["—" if gain is None else f"{gain:.1f}x"]
                + [percent(_fraction(c)) for c in cells]
                + [" / ".join("—" if c is None else str(c.rounds) for c in cells)]
                + [_peak_memory(cells)]
            )
    header = [
        "N",
        "algorithm",
        "sequential",
        "vectorised",
        "speedup",
        "FLOP frac. seq.",
        "FLOP frac. vec.",
        "rounds timed (seq. / vec.)",
        "peak RSS so far (GiB)",
    ]
    verdict = [
        f"{algorithm}: {gains[(TARGET_CLIENTS, algorithm)]:.1f}x"
        for algorithm in ROUND_ALGORITHMS
        if (TARGET_CLIENTS, algorithm) in gains
    ]
    lines = [
        "## Synthetic round: sequential vs vectorised simulator",
        "",
        "One global round of the synthetic suite (noisy quadratic, d_x = d_y = 20, the suite's "
        "RABO/RAFBO settings, capacities 1..1/16 repeated over N clients); median wall time.",
        "",
        *table(header, rows),
        "",
    ]
    if verdict:
        lines += [
            f"Vectorised speedup at N = {TARGET_CLIENTS} (target >= {TARGET_SPEEDUP}x): "
            + ", ".join(verdict)
            + ".",
            "",
        ]
    return lines


def seed_batch_section(results: list[Result]) -> list[str]:
    """The rate-sweep point over S seeds: S runs one by one against one seed batch."""
    cells = {r.info["mode"]: r for r in results if r.test == "test_seed_batch"}
    if not cells:
        return []
    info = next(iter(cells.values())).info
    runs = info["seeds"] * info["rounds"]
    rows = [
        [mode, seconds(cell.median), seconds(cell.median / runs)]
        for mode, cell in sorted(cells.items(), reverse=True)
    ]
    lines = [
        f"## Rate-sweep point: {info['seeds']} seeds one by one vs one seed batch",
        "",
        f"The rates suite's base point ({info['algorithm']}, quadratic d_x = d_y = 10, ten "
        f"clients at capacity 1/2, T = 2), {info['seeds']} runs of {info['rounds']} rounds "
        "each with their evaluations: one after another on the sequential simulator "
        f"({info['threads']} torch threads), or as one seed batch (`--seed-batch`, 1 thread; "
        "docs/scaling.md); one timed call each.",
        "",
        *table(["mode", f"{info['seeds']} runs", "per run and round"], rows),
        "",
    ]
    if {"sequential", "batched"} <= set(cells):
        gain = cells["sequential"].median / cells["batched"].median
        lines += [
            f"Batched-seed speed-up at S = {info['seeds']} (target >= {TARGET_SPEEDUP}x): "
            f"{gain:.1f}x.",
            "",
        ]
    return lines


def estimator_section(results: list[Result]) -> list[str]:
    estimates = [r for r in results if r.test == "test_estimator"]
    dims = sorted({r.info["dim"] for r in estimates})
    names = sorted({r.info["estimator"] for r in estimates})
    rows = []
    for name in names:
        row = [name]
        for d in dims:
            cell = _find(estimates, "test_estimator", estimator=name, dim=d)
            refused = cell is None and name == "exact" and d > EXACT_MAX_DIM
            row.append(f"refuses d > {EXACT_MAX_DIM}" if refused else seconds(_median(cell)))
            row.append(percent(_fraction(cell)))
        rows.append(row)
    header = ["estimator"] + [f"{h} d={d}" for d in dims for h in ("time", "FLOP frac.")]
    return [
        "## Hypergradient estimators",
        "",
        "One estimate on the logistic hyperparameter problem (d_x = d_y = d, one client of 128 + "
        "128 samples, 20 steps/terms/iterations, coordinate_fd with |S| = 32, gaussian_zo with "
        "20 directions); median wall time. `exact` forms dense d x d matrices and refuses "
        f"d > {EXACT_MAX_DIM} by design.",
        "",
        *table(header, rows),
        "",
    ]


def overhead_section(results: list[Result]) -> list[str]:
    timed = [r for r in results if r.test == "test_oracle_overhead"]
    dims = sorted({r.info["dim"] for r in timed})
    rows, missed = [], []
    for name in sorted({r.info["estimator"] for r in timed}):
        row = [name]
        for d in dims:
            cell = _find(timed, "test_oracle_overhead", estimator=name, dim=d)
            if cell is None:
                row.append("—")
                continue
            info = cell.info
            harness, plain = seconds(info["harness_s"]), seconds(info["reference_s"])
            row.append(f"{harness} / {plain}: {info['ratio']:.2f}")
            if info["ratio"] > TARGET_OVERHEAD:
                missed.append(f"{name} d={d}")
        rows.append(row)
    if not rows:
        return []
    verdict = "met everywhere" if not missed else "missed at " + ", ".join(missed)
    return [
        "## Oracle overhead: estimators vs plain torch",
        "",
        "Neumann (20 terms) and CG (20 iterations) hypergradients on the deterministic quadratic "
        "(d_x = d_y = d, one client, float64) through `Oracles`, against plain torch that builds "
        "grad_y g's graph once and takes every product through it "
        "(tests/benchmarks/reference.py). Both are timed in pairs, back to back in each round "
        "(tests/benchmarks/test_oracle_speed.py): median harness time / median reference time: "
        "median over the rounds of the pair's ratio.",
        "",
        *table(["estimator"] + [f"d={d}" for d in dims], rows),
        "",
        f"Target harness / reference <= {TARGET_OVERHEAD}: {verdict}.",
        "",
    ]


def cnn_section(results: list[Result]) -> list[str]:
    rounds = [r for r in results if r.test == "test_cnn_round"]
    if not rounds:
        return ["## CNN round", "", "Not run (no Omniglot data: RABO_BENCH_DATA unset).", ""]
    rows = [
        [
            r.info["algorithm"],
            seconds(r.median),
            f"{r.info['flops'] / 1e9:.3g}",
            percent(_fraction(r)),
            str(r.rounds),
        ]
        for r in rounds
    ]
    return [
        f"## CNN round: Omniglot smoke ({rounds[0].info['setting']})",
        "",
        "One global round, 10 clients training Conv4 sub-models of width 4 x capacity, "
        "sequential simulator; float32.",
        "",
        *table(["algorithm", "time", "GFLOP", "FLOP frac.", "rounds timed"], rows),
        "",
    ]


def fewshot_section(results: list[Result], where: str) -> list[str]:
    """The Omniglot round next to the plain PyTorch reference loop (test_fewshot_speed.py)."""
    rounds = [r for r in results if r.test == "test_fewshot_round"]
    if not rounds:
        return [
            f"## Omniglot round vs a plain PyTorch loop ({where})",
            "",
            "Not run (no Omniglot data, or no reference script: tests/benchmarks/"
            "test_fewshot_speed.py says where it looks).",
            "",
        ]
    rows = []
    for r in rounds:
        info = r.info
        rows.append(
            [
                info["size"],
                info["algorithm"],
                info["reference_kind"].replace("_", "-"),
                seconds(info.get("best_s")),
                seconds(info["reference_s"]),
                f"{info['ratio']:.2f}" if "ratio" in info else "—",
                f"{info['flops'] / 1e9:.3g}",
                f"{info['reference_flops'] / 1e9:.3g}",
                percent(info.get("flop_fraction")),
                percent(info["reference_flop_fraction"]),
            ]
        )
    configs = sorted({(r.info["size"], r.info["reference_config"]) for r in rounds})
    return [
        f"## Omniglot round vs a plain PyTorch loop ({where})",
        "",
        "One global round of Omniglot 5-way 5-shot, 10 clients at capacities 1..1/16, against "
        "`reference_round.py` (the shared bench script: the same arithmetic without masks, "
        "registries or counters) run in the same benchmark session with the same "
        "configuration. RABO's round is set against the reference's bilevel client, Static's "
        "against its single-level one. Times are the best of the timed calls on both sides; "
        "ratio = ours / reference. The work differs by design less in FLOPs (the GFLOP "
        "columns) than in kernel calls, which at these widths decide the time: per client "
        "RABO runs four backbone forwards (its inner phase's support set, then for the "
        "estimate's episode the support set of the re-adapted head, the query set of grad f "
        "and the support set of grad_y g's graph) and two backward passes (grad_x f, the mixed "
        "product), each set normalised alone; the reference runs one forward of all the "
        "client's images under one normalisation, and one backward. Profiled at the cpu size "
        "(torch.profiler, 5w5s): RABO's round made 160 convolution forwards and 80 backwards, "
        "the reference's 40 and 40; Static's, which forwards support and query apart, 400 "
        "and 400 against 200 and 200.",
        "",
        *table(
            [
                "size",
                "ours",
                "reference",
                "ours (time)",
                "reference (time)",
                "ratio",
                "ours GFLOP",
                "ref. GFLOP",
                "ours FLOP frac.",
                "ref. FLOP frac.",
            ],
            rows,
        ),
        "",
        *[f"* `{size}`: `reference_round.py {config}`" for size, config in configs],
        "",
    ]


def reference_section(results: list[Result]) -> list[str]:
    seen = {}
    for r in results:
        if "dtype" in r.info:  # the benchmarks that record a FLOP fraction
            seen.setdefault(r.info["dtype"], r.info)
    rows = [
        [
            dtype,
            f"{info['matmul_flop_per_s'] / 1e9:.3g}",
            str(info["matmul_size"]),
            str(info["threads"]),
            info["device"],
        ]
        for dtype, info in sorted(seen.items())
    ]
    return [
        "## FLOP fractions: how they are measured",
        "",
        "FLOP fraction = (counted FLOPs of the measured call / its median time) / the FLOP/s of "
        "a dense square matmul of the same dtype, best of 5, measured in the same process. "
        "FLOPs are those of mm/bmm/addmm/convolutions (torch.utils.flop_counter) plus "
        "mv/addmv/dot/vdot, 2 per multiply-add; elementwise work is not counted, so fractions "
        "are lower bounds. Rule details: tests/benchmarks/flops.py.",
        "",
        *table(["dtype", "matmul GFLOP/s", "matmul n", "threads", "device"], rows),
        "",
    ]


def gpu_section(cpu: list[Result], gpu: list[Result], gpu_model: str) -> list[str]:
    rows = []
    for n in GPU_CLIENTS:
        for algorithm in ROUND_ALGORITHMS:
            for engine in ENGINES:
                key = {"clients": n, "algorithm": algorithm, "engine": engine}
                here, there = (_find(rs, "test_round", **key) for rs in (cpu, gpu))
                if there is None:  # the GPU run did not time this point
                    continue
                ratio = "—" if here is None else f"{here.median / there.median:.1f}x"
                rows.append(
                    [
                        str(n),
                        algorithm,
                        engine,
                        seconds(_median(here)),
                        seconds(_median(there)),
                        ratio,
                    ]
                )
    if not rows:
        return []
    return [
        f"## CPU vs GPU ({gpu_model})",
        "",
        *table(["N", "algorithm", "engine", "CPU", "GPU", "GPU speedup"], rows),
        "",
    ]


def write(
    bench: Path,
    out: Path,
    gpu: Path | None,
    wall: float | None,
    command: str,
    update: Path | None = None,
    gpu_command: str | None = None,
) -> list[Path]:
    """The report of ``bench`` (with ``update``'s re-run merged in) in ``out``; ``command`` and
    ``wall`` describe the run of ``bench`` where its JSON does not record them, ``gpu_command``
    the run of ``gpu`` (default: ``command``)."""
    data = json.loads(bench.read_text())
    command, wall = data.setdefault("command", command), data.setdefault("wall_seconds", wall)
    if update is not None:
        data = merge(data, json.loads(update.read_text()))
    data, results = results_of(data)
    out.mkdir(parents=True, exist_ok=True)
    body = [
        "# Performance benchmarks",
        "",
        "Written by `rabo_bench/report/performance.py` from `benchmark.json` (`make bench`); "
        "machine and commit in PROVENANCE.md.",
        "",
        *round_section(results),
        *seed_batch_section(results),
        *estimator_section(results),
        *overhead_section(results),
        *cnn_section(results),
        *fewshot_section(results, "CPU"),
        *reference_section(results),
    ]
    prov = ["# Provenance", "", *provenance(data, command, wall, "CPU run")]
    for part in data.get("updates", []):
        label = "Re-run of " + ", ".join(f"`{t}`" for t in part["tests"])
        prov += provenance(part, None, None, label)
    written = [out / "README.md", out / "PROVENANCE.md", out / "benchmark.json"]
    if gpu is not None:
        gpu_data, gpu_results = load(gpu)
        model = gpu_data["machine_info"].get("gpu", "GPU")
        body += gpu_section(results, gpu_results, model)
        body += fewshot_section(gpu_results, model)
        prov += provenance(gpu_data, gpu_command or command, None, f"GPU run ({model})")
        if gpu.resolve() != (out / "benchmark-gpu.json").resolve():  # else already in place
            shutil.copyfile(gpu, out / "benchmark-gpu.json")
        written.append(out / "benchmark-gpu.json")
    written[0].write_text("\n".join(body))
    written[1].write_text("\n".join(prov))
    written[2].write_text(json.dumps(data, indent=1) + "\n")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="pytest-benchmark JSON of the CPU run")
    parser.add_argument("out", type=Path, help="folder to write (results/performance)")
    parser.add_argument("--gpu", type=Path, help="pytest-benchmark JSON of a GPU run")
    parser.add_argument("--wall-seconds", type=float, help="wall time of the whole run")
    parser.add_argument("--command", default="make bench", help="the command that ran it")
    parser.add_argument(
        "--gpu-command", help="the command that ran the GPU run (default: --command)"
    )
    parser.add_argument(
        "--update",
        type=Path,
        help="pytest-benchmark JSON of a re-run of some tests (replaces their benchmarks)",
    )
    args = parser.parse_args(argv)
    paths = write(
        args.bench,
        args.out,
        args.gpu,
        args.wall_seconds,
        args.command,
        args.update,
        args.gpu_command,
    )
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
