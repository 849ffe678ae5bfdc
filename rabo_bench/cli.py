"""The ``rabo-bench`` command: ``list`` what exists, ``run`` a suite (reference: docs/suites.md).

Every user error (unknown names, a malformed suite, bad options, an unwritable output folder)
is one line ``rabo-bench: error: <message>`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from rabo_bench import __version__
from rabo_bench.engine import interrupt
from rabo_bench.engine.checkpoint import DEFAULT_CHECKPOINTS, CheckpointPolicy
from rabo_bench.engine.sweep import ENGINES

PROG = "rabo-bench"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _assignment(text: str) -> dict:
    from rabo_bench.engine.suite_file import parse_assignment

    try:
        return parse_assignment(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _device(text: str) -> str:
    from rabo_bench.engine.devices import DEVICE_CHOICES, is_device_name

    if not is_device_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {DEVICE_CHOICES}")
    return text


def _precision(text: str) -> str:
    from rabo_bench.models.compute import PRECISIONS

    if text not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(PRECISIONS)}")
    return text


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no algorithm")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Federated bilevel optimisation benchmarks (RABO, RAFBO, ...)."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="algorithms, suites and presets")
    run = commands.add_parser("run", help="run a suite (skips runs already in the output folder)")
    run.add_argument("suite", help="a suite name (see list) or a path to a .toml file")
    run.add_argument("--preset", help="a preset of the suite, e.g. smoke")
    run.add_argument(
        "--set",
        type=_assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a key of the suite after its preset and settings, checked like the file: "
        "KEY dotted, VALUE in TOML (strings quoted), e.g. rounds=5, problem.width=8, "
        "overrides.rabo.outer.lr=0.1, overrides.single_level.inner.steps=1; repeatable",
    )
    run.add_argument("--algorithms", type=_names, help="comma-separated subset, e.g. rabo,fedmbo")
    run.add_argument("--seeds", type=_positive_int, metavar="N", help="run seeds 0 .. N-1")
    run.add_argument("--rounds", type=_positive_int, metavar="Q", help="global iterations")
    run.add_argument(
        "--settings", type=_names, help="comma-separated subset of the suite's [settings]"
    )
    run.add_argument("--out", type=Path, help="output folder (default ./out/<suite>[-preset])")
    run.add_argument(
        "--device",
        type=_device,
        help="auto (the suite's default: CUDA for the network problems when present, else the "
        "CPU), cpu, cuda or cuda:N; not part of the runs' identity",
    )
    run.add_argument(
        "--precision",
        type=_precision,
        help="the networks' precision: fp32 (the default), tf32 (CUDA only) or bf16; the "
        "synthetic problems take fp32 only; other than fp32 it is part of the runs' identity",
    )
    run.add_argument(
        "--channels-last",
        action="store_true",
        help="channels-last (NHWC) convolutions for the CNNs on CUDA (no effect on the CPU)",
    )
    tracking = run.add_mutually_exclusive_group()
    tracking.add_argument(
        "--mlflow-uri",
        help="MLflow tracking URI (default: sqlite mlflow.db beside the output folder, one store "
        "for every suite under ./out)",
    )
    tracking.add_argument("--no-mlflow", action="store_true", help="do not mirror to MLflow")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved runs, what each still needs and the time estimate; run nothing",
    )
    run.add_argument(
        "--yes",
        action="store_true",
        help="start a suite sized for a GPU without a preset on a machine without one",
    )
    run.add_argument(
        "--jobs", type=_positive_int, default=1, metavar="N", help="runs at once (local engine)"
    )
    run.add_argument("--engine", choices=ENGINES, default="local", help="where runs execute")
    run.add_argument(
        "--ray-address", metavar="ADDRESS", help="Ray cluster (default: start a local Ray)"
    )
    run.add_argument(
        "--clients",
        choices=("auto", "sequential", "vectorised"),
        default="auto",
        help="how one run simulates its clients",
    )
    run.add_argument(
        "--seed-batch",
        type=_positive_int,
        metavar="S",
        help="execute up to S runs that differ only in their seeds as one vmapped batch (the "
        "same rows, much faster on small problems; default: a rate suite's seeds, else 1)",
    )
    run.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=DEFAULT_CHECKPOINTS.rounds,
        metavar="K",
        help=f"save a run's state every K rounds (default {DEFAULT_CHECKPOINTS.rounds})",
    )
    run.add_argument(
        "--checkpoint-minutes",
        type=_positive_float,
        default=DEFAULT_CHECKPOINTS.minutes,
        metavar="M",
        help=f"... or after M minutes (default {DEFAULT_CHECKPOINTS.minutes:g})",
    )
    fit_rate = commands.add_parser(
        "fit-rate", help="fit rate exponents to RESULTS_DIR/rates.csv; tables and plots"
    )
    fit_rate.add_argument(
        "results_dir",
        type=Path,
        metavar="RESULTS_DIR",
        help="a folder with the rate suite's rates.csv",
    )
    report = commands.add_parser(
        "report", help="tables and plots of a finished suite from its saved results alone"
    )
    report.add_argument(
        "target",
        metavar="SUITE_OR_DIR",
        nargs="+",
        help="a results folder (the --out of a run), or the suite whose results to report; "
        "several folders: print their final metrics side by side (writes nothing)",
    )
    report.add_argument("--preset", help="the preset the suite ran with (default folder)")
    report.add_argument("--out", type=Path, help="where the suite's results are (not the default)")
    cost = commands.add_parser(
        "cost", help="SPEC §8 cost accounting (parameter and FLOP fractions) of a suite"
    )
    cost.add_argument("suite", help="a suite name (see list) or a path to a .toml file")
    cost.add_argument(
        "--presets", type=_names, default=["paper", "cpu"], help="comma-separated presets"
    )
    cost.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def cmd_report(args: argparse.Namespace) -> None:
    from rabo_bench.report.build import results_folder, write_report

    if len(args.target) > 1:
        _compare(args)
        return
    try:
        folder = results_folder(args.target[0], args.preset, args.out)
    except (ValueError, OSError) as err:
        fail(str(err))
    try:
        written = write_report(folder)
    except (ValueError, OSError, KeyError) as err:
        fail(f"cannot report on {folder} (nothing was written): {err}")
    for path in written:
        print(f"wrote {path}")


def _compare(args: argparse.Namespace) -> None:
    from rabo_bench.report.build import results_folder
    from rabo_bench.report.folders import compare_folders

    if args.preset is not None or args.out is not None:
        fail("comparing folders: give the folders themselves, without --preset or --out")
    try:
        print(compare_folders([results_folder(target) for target in args.target]))
    except (ValueError, OSError, KeyError) as err:
        fail(str(err))


def cmd_cost(args: argparse.Namespace) -> None:
    from rabo_bench.engine.suite_file import tomllib
    from rabo_bench.report.cost_model import write_cost_report

    try:
        written = write_cost_report(args.suite, args.presets, args.out.resolve())
    except (ValueError, OSError, tomllib.TOMLDecodeError) as err:
        fail(str(err))
    print(written[0].read_text())
    for path in written:
        print(f"wrote {path}")


def cmd_list() -> None:
    from rabo_bench.algorithms import available
    from rabo_bench.engine.suite import available_suites

    print("algorithms:")
    algos = available()
    width = max(map(len, algos))
    for name, description in algos.items():
        print(f"  {name.ljust(width)}  {description}")
    print("suites (run with: rabo-bench run SUITE [--preset NAME]):")
    suites = available_suites()
    width = max(map(len, suites), default=0)
    for name, (description, presets) in suites.items():
        print(f"  {name.ljust(width)}  {description}")
        print(f"  {''.ljust(width)}  presets: {', '.join(presets) or '(none)'}")


def cmd_run(args: argparse.Namespace) -> None:
    from rabo_bench.engine.devices import suite_device
    from rabo_bench.engine.results import check_writable
    from rabo_bench.engine.suite import check_data, load_suite
    from rabo_bench.engine.suite_file import tomllib
    from rabo_bench.engine.sweep import Engine
    from rabo_bench.federated.distributed import leave

    try:
        suite = load_suite(
            args.suite,
            args.preset,
            rounds=args.rounds,
            seeds=args.seeds,
            algorithm_names=args.algorithms,
            changes=args.set,
            device=args.device,
            precision=args.precision,
        )
        if args.settings:
            suite = suite.only_settings(args.settings)
        out = (args.out or suite.default_out).resolve()
        if suite.rates:
            from rabo_bench.theory.rates import RateGrid

            RateGrid.parse(suite)
        device = suite_device(suite)
        _check_size(suite, device, args.yes)
        check_data(suite)
        engine = Engine(args.engine, args.jobs, args.ray_address)
        engine.check()
        if suite.rates and not engine.in_process:
            raise ValueError("rate suites run in one process: drop --jobs and --engine")
        if (args.seed_batch or 1) > 1 and os.environ.get("WORLD_SIZE", "1") != "1":
            raise ValueError("a seed batch runs in one process: drop --seed-batch under torchrun")
        rank = _join_torchrun(engine, suite, device)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as err:
        fail(str(err))
    checkpoints = CheckpointPolicy(args.checkpoint_every, args.checkpoint_minutes)
    if rank > 0:  # a follower rank: simulates its share of every run's clients, writes nothing
        from rabo_bench.engine.runner import execute_suite

        execute_suite(
            suite, out, None, False, lambda _: None, clients=args.clients, writer=False,
            checkpoints=checkpoints, channels_last=args.channels_last,
        )  # fmt: skip
        leave(together=True)
        return
    if args.dry_run:
        _dry_run(suite, out)
        return
    try:
        check_writable(out)
    except OSError as err:
        fail(f"output folder {out} is not writable ({err.strerror or err})")

    from rabo_bench.report.summary import write_summary
    from rabo_bench.tracking.context import command_tags
    from rabo_bench.tracking.mlflow_sink import (
        MlflowSink,
        browse_command,
        default_artifacts,
        default_uri,
    )

    sink = None
    if not args.no_mlflow:
        tags = command_tags(args.command_line, suite.preset, device)
        sink = MlflowSink(args.mlflow_uri or default_uri(out), default_artifacts(out), tags)
    print(f"suite {suite.name} ({suite.path}), preset {suite.preset or '(none)'}")
    print(f"output folder: {out}")
    print(f"device: {device}, precision {suite.precision}")
    # Ctrl-C / SIGTERM end the current round with a checkpoint (not under torchrun, whose
    # ranks must stop at the same round, nor on Ray, whose workers are not ours to signal)
    stoppable = engine.kind == "local" and os.environ.get("WORLD_SIZE", "1") == "1"
    status = "FAILED"
    try:
        with interrupt.handled() if stoppable else contextlib.nullcontext():
            _execute(suite, out, sink, args, engine, checkpoints)
        status = "FINISHED"
    except (ValueError, ConnectionError) as err:  # finished runs are on disk already
        fail(str(err))
    except (interrupt.Interrupted, KeyboardInterrupt) as stop:
        status = "KILLED"
        _stopped(stop, out)
    finally:
        if sink is not None:
            sink.close(status)
    if suite.rates:
        return
    text, summary_path = write_summary(out / "results.csv")
    print()
    print(text)
    print()
    print(f"results table: {out / 'results.csv'} (one file per run in {out / 'runs'})")
    print(f"summary: {summary_path}")
    if sink is not None and sink.enabled:
        print(f"MLflow: {sink.tracking_uri} (browse with: {browse_command(sink.tracking_uri)})")
    leave(together=True)  # under torchrun: wait for the follower ranks


def _execute(suite, out: Path, sink, args: argparse.Namespace, engine, checkpoints) -> None:
    from rabo_bench.engine.runner import execute_suite

    if suite.rates:
        _run_rates(suite, out, sink, progress=not args.no_progress, seed_batch=args.seed_batch)
        return
    execute_suite(
        suite,
        out,
        sink,
        progress=not args.no_progress,
        engine=engine,
        clients=args.clients,
        checkpoints=checkpoints,
        channels_last=args.channels_last,
        seed_batch=args.seed_batch or 1,
    )


def _check_size(suite, device, confirmed: bool) -> None:
    """A suite whose setting without a preset is the paper's (``sized_for_gpu``) does not start
    on the CPU (no CUDA, or --device cpu) unless the user confirms with --yes."""
    if suite.sized_for_gpu and suite.preset is None and not confirmed and device.type != "cuda":
        presets = ", ".join(suite.presets) or "(none)"
        raise ValueError(
            f"suite {suite.name} without a preset is the paper's setting, sized for a GPU, "
            f"and its runs would compute on the {device}; choose a preset (--preset, one of: "
            f"{presets}) or add --yes to start it anyway"
        )


def _dry_run(suite, out: Path) -> None:
    from rabo_bench.engine.plan import describe_plan
    from rabo_bench.engine.run import expand

    print(f"suite {suite.name} ({suite.path}), preset {suite.preset or '(none)'}")
    print(f"output folder: {out}")
    specs = expand(suite)
    if suite.rates:
        from rabo_bench.theory.rates import RateGrid, rate_runs

        specs = [spec for _, _, spec in rate_runs(suite, RateGrid.parse(suite))]
    print(describe_plan(specs, out))


def _stopped(stop: BaseException, out: Path) -> NoReturn:
    """The one line of an interrupted ``run``; exit 128 + the signal's number (130: Ctrl-C)."""
    number = getattr(stop, "signum", signal.SIGINT)
    print(
        f"{PROG}: stopped by {signal.Signals(number).name}; finished runs and the current "
        f"runs' checkpoints are in {out}: the same command resumes",
        file=sys.stderr,
    )
    raise SystemExit(128 + number)


def _join_torchrun(engine, suite, device) -> int:
    """This process's rank: under ``torchrun`` (WORLD_SIZE > 1) every rank runs the suite and
    simulates its share of each run's clients (torch.distributed: gloo when the runs compute
    on the CPU, NCCL on CUDA ``device``); rank 0 alone writes. Outside torchrun 0."""
    import atexit

    from rabo_bench.federated.distributed import init_from_env, leave

    rank, ranks = init_from_env(device)
    atexit.register(leave)
    if ranks > 1 and (suite.rates or not engine.in_process):
        raise ValueError("under torchrun, ranks share each run's clients: drop --jobs/--engine")
    return rank


def _run_rates(suite, out: Path, sink, progress: bool, seed_batch: int | None) -> None:
    """A rate-measurement suite: run the grid, then fit and plot (SPEC §4)."""
    from rabo_bench.theory.rates import execute_rates
    from rabo_bench.theory.report import write_rate_report

    table = execute_rates(suite, out, sink, progress=progress, seed_batch=seed_batch)
    report = write_rate_report(table, out)
    print()
    print((out / "exponents.txt").read_text())
    print(f"rates: {out / 'rates.csv'}; report: {report}; plots: {out / 'plots'}")


def cmd_fit_rate(args: argparse.Namespace) -> None:
    """Power-law fits of avg ||grad F||^2 in Q, C_x*, T against the theory (SPEC §4)."""
    from rabo_bench.theory.report import read_rates, write_rate_report

    results = args.results_dir.resolve()
    try:
        rates = read_rates(results / "rates.csv")
        report = write_rate_report(rates, results)
    except (ValueError, OSError) as err:
        fail(str(err))
    print((results / "exponents.txt").read_text())
    print(f"exponents: {report} and {results / 'exponents.csv'}")
    print(f"plots: {results / 'plots'}")


def main(argv: list[str] | None = None) -> int:
    # torch's first forward-mode AD call warns about torch.jit.script's deprecation; internal.
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = " ".join([PROG, *argv])
    if args.command == "list":
        cmd_list()
    elif args.command == "fit-rate":
        cmd_fit_rate(args)
    elif args.command == "report":
        cmd_report(args)
    elif args.command == "cost":
        cmd_cost(args)
    else:
        cmd_run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
