"""The ``pipetune`` command. ``main(argv) -> exit code``; every refusal is one line on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipetune.errors import PipetuneError, UsageError
from pipetune.model import Run
from pipetune.settings import ALLOWABLE, Settings, parse_config

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in args:  # everything after `--` belongs to the user's script
        cut = args.index("--")
        args, script_args = args[:cut], args[cut + 1 :]
    parser = _parser()
    ns = parser.parse_args(args)
    ns.script_args = script_args
    try:
        return int(ns.handler(ns))
    except PipetuneError as err:
        print(f"pipetune: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("pipetune: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipetune", description="Record, diagnose and tune Ray Data pipelines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", type=Path, default=None, help="SQLite store (default .pipetune/pipetune.db)")

    launch = argparse.ArgumentParser(add_help=False)
    launch.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="STAGE.KNOB=VALUE",
        help="override a stage knob (STAGE: index, key or UDF name) or ctx.FIELD=VALUE",
    )
    launch.add_argument("--config", type=Path, help="a JSON or TOML file of overrides (the form `tune` writes)")
    launch.add_argument("--address", help="attach to this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    launch.add_argument("--timeout", type=float, help="stop the run after this many seconds")
    launch.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    launch.add_argument("--full-names", action="store_true", help="show stage names in full in the live view")
    launch.add_argument(
        "--stall-after",
        type=float,
        default=60.0,
        metavar="S",
        help="capture the workers' stacks when no rows move for S seconds (default 60)",
    )

    run = sub.add_parser("run", parents=[store, launch], help="run a script under the recorder: run S.py -- ARGS")
    run.add_argument("script", type=Path)
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    run.set_defaults(handler=cmd_run)

    doctor = sub.add_parser("doctor", parents=[store, launch], help="diagnose a run (or record one, then diagnose)")
    doctor.add_argument("target", nargs="?", help="a run id, or a script to record first")
    doctor.add_argument(
        "--verify",
        nargs=2,
        metavar=("BEFORE", "AFTER"),
        help="did the fix work? run ids, comma-separated for repeated runs",
    )
    doctor.set_defaults(handler=cmd_doctor)

    tune = sub.add_parser("tune", parents=[store, launch], help="find faster settings: baseline, one fix, measure")
    tune.add_argument("script", type=Path, nargs="?", help="the script to tune (not with --resume)")
    tune.add_argument("--budget", type=int, default=3, help="trial runs after the baseline, repeats included")
    tune.add_argument("--time", dest="time_budget", help="wall-clock budget for the study, e.g. 90s, 10m, 1h")
    tune.add_argument("--resume", metavar="STUDY", help="continue a study that was interrupted or killed")
    tune.add_argument("--apply", action="store_true", help="write the tuned settings into the script")
    tune.add_argument("-o", "--output", type=Path, help="where to write the best settings (a --config file)")
    tune.add_argument("--no-warmup", action="store_true", help="skip the warm-up run (e.g. on a warm cluster)")
    tune.add_argument(
        "--confirm",
        action="store_true",
        help="run the best settings once in full afterwards and print predicted against measured time",
    )
    tune.add_argument(
        "--allow",
        action="append",
        default=[],
        choices=ALLOWABLE,
        metavar="iterator.KNOB",
        help="let tuning change what the script's loop receives: iterator.batch_size (a training hyperparameter) "
        "or iterator.local_shuffle_buffer_size; never changed otherwise",
    )
    tune.set_defaults(handler=cmd_tune)

    lint = sub.add_parser("lint", help="the production checklist on the code (static, no Ray); exit 1 on findings")
    lint.add_argument("files", type=Path, nargs="+")
    lint.add_argument("--fix", action="store_true", help="apply the safe fixes in place")
    lint.add_argument("--format", choices=("text", "json"), default="text")
    lint.add_argument("--gpus", type=int, help="GPUs the pipeline will have (default: this machine's)")
    lint.set_defaults(handler=cmd_lint)

    check = sub.add_parser("checklist", parents=[store], help="the production checklist for a recorded run")
    check.add_argument("run", help="run id, a unique prefix of it, or `last`")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_checklist)

    plan = sub.add_parser("plan", parents=[store], help="starting settings per stage from the guide's tables")
    plan.add_argument("script", type=Path)
    plan.add_argument("--cluster", help='a cluster you may not have, e.g. "4x(16 CPU, 1 A10G)"')
    plan.add_argument("--model", help="the model's name, for the GPU batch table (e.g. resnet152)")
    plan.add_argument("--resolution", type=int, help="image side in pixels, for the batch scaling (e.g. 448)")
    plan.add_argument("--run", help="plan from this recorded run (default: the script's latest, if any)")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(handler=cmd_plan)

    batch = sub.add_parser("batch-size", parents=[store], help="the batch-size loop on the real stage, on a slice")
    batch.add_argument("script", type=Path)
    batch.add_argument("--stage", required=True, help="the stage: index, key or UDF name")
    batch.add_argument("--start", type=int, default=16, help="the first batch size to measure (default 16)")
    batch.add_argument("--rows", type=int, default=2048, help="rows of real input each probe reads (default 2048)")
    batch.add_argument("--max", type=int, default=1 << 16, help="the largest batch size to measure (default 65536)")
    batch.add_argument("--address", help="attach to this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    batch.add_argument("--json", action="store_true")
    batch.set_defaults(handler=cmd_batch_size)

    report = sub.add_parser("report", parents=[store], help="a self-contained HTML report of a run or a study")
    report.add_argument("id", help="a run id or a study id (a unique prefix, or `last` for the last run)")
    report.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    report.set_defaults(handler=cmd_report)

    trace = sub.add_parser("trace", parents=[store], help="a run in Chrome trace format (Perfetto, chrome://tracing)")
    trace.add_argument("run", help="run id, a unique prefix of it, or `last`")
    trace.add_argument("-o", "--output", type=Path, required=True, help="the JSON file to write")
    trace.set_defaults(handler=cmd_trace)

    ui = sub.add_parser("ui", parents=[store], help="a local dashboard over the store (read-only)")
    ui.add_argument("--host", default="127.0.0.1", help="where to listen (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=8765)
    ui.set_defaults(handler=cmd_ui)

    studies = sub.add_parser("studies", parents=[store], help="the tuning studies")
    studies.add_argument("--limit", type=int, default=30)
    studies.set_defaults(handler=cmd_studies)

    runs = sub.add_parser("runs", parents=[store], help="the run history")
    runs.add_argument("--limit", type=int, default=30)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=cmd_runs)

    show = sub.add_parser("show", parents=[store], help="one run: stages, knobs, figures, bottleneck")
    show.add_argument("run", help="run id, a unique prefix of it, or `last`")
    show.add_argument("--json", action="store_true")
    show.add_argument("--width", type=int, help="render the table at this width")
    show.set_defaults(handler=cmd_show)

    stacks = sub.add_parser("stacks", parents=[store], help="Python stacks of a run's Ray workers (py-spy)")
    stacks.add_argument("run", help="a live run: its workers now; a finished one: what the watchdog captured")
    stacks.set_defaults(handler=cmd_stacks)

    export = sub.add_parser("export", parents=[store], help="save a run as a JSON file")
    export.add_argument("run")
    export.add_argument("file", type=Path)
    export.set_defaults(handler=cmd_export)

    imp = sub.add_parser("import", parents=[store], help="add a run saved by `export` to the store")
    imp.add_argument("file", type=Path)
    imp.set_defaults(handler=cmd_import)
    return parser


def _overrides(ns: argparse.Namespace) -> Settings:
    """The settings the command line gives: the ``--config`` file's, then every ``--set`` on top."""
    from_file = parse_config(ns.config) if ns.config else Settings()
    return from_file.merged(Settings.from_args(ns.sets))


def _record(ns: argparse.Namespace, script: Path) -> Run:
    from pipetune.record import Launch, record
    from pipetune.store import open_store

    if ns.timeout is not None and ns.timeout <= 0:
        raise UsageError(f"--timeout {ns.timeout} is not valid", "give a number of seconds above 0")
    live = not ns.json and not getattr(ns, "quiet", False)
    launch = Launch(
        script=script,
        args=tuple(ns.script_args),
        overrides=_overrides(ns),
        address=ns.address,
        timeout_s=ns.timeout,
        stdout_to_stderr=ns.json,
        stall_after_s=ns.stall_after,
        extra_env={"RAY_DATA_DISABLE_PROGRESS_BARS": "1"} if live else {},  # one display at a time: ours
    )
    if not live:
        return record(launch, open_store(ns.store))
    from pipetune.report import LiveView

    with LiveView(full_names=ns.full_names) as view:
        return record(launch, open_store(ns.store), view)


def _exit_code(run: Run) -> int:
    if run.status.ok:
        return 0
    return run.exit_code if run.exit_code and run.exit_code > 0 else 1


def cmd_run(ns: argparse.Namespace) -> int:
    run = _record(ns, ns.script)
    _print_run(run, as_json=ns.json, quiet=ns.quiet)
    return _exit_code(run)


def cmd_doctor(ns: argparse.Namespace) -> int:
    from pipetune.diagnose import diagnose
    from pipetune.report import console, diagnosis_text, diagnosis_view
    from pipetune.store import open_store

    if ns.verify:
        return _verify(ns)
    if not ns.target:
        raise UsageError("doctor needs a run id or a script", "pipetune doctor RUN_ID, or pipetune doctor SCRIPT.py")
    is_script = ns.target.endswith(".py") or Path(ns.target).is_file()
    run = _record(ns, Path(ns.target)) if is_script else open_store(ns.store).load(ns.target)
    found = diagnose(run)
    if ns.json:
        print(json.dumps(diagnosis_view(found), indent=1))
    else:
        console().print(diagnosis_text(found))
    return _exit_code(run) if is_script else 0


def _verify(ns: argparse.Namespace) -> int:
    from pipetune.diagnose import verify
    from pipetune.report import console, verification_text, verification_view
    from pipetune.store import open_store

    store = open_store(ns.store)
    before, after = ([store.load(ref) for ref in side.split(",") if ref] for side in ns.verify)
    result = verify(before, after)
    if ns.json:
        print(json.dumps(verification_view(result), indent=1))
    else:
        console().print(verification_text(result))
    return 0


def _print_run(run: Run, as_json: bool, quiet: bool = False, width: int | None = None) -> None:
    from pipetune.report import console, run_summary, run_view

    if as_json:
        print(json.dumps(run_view(run), indent=1))
    elif not quiet:
        console(width).print(run_summary(run))
    if not run.status.ok and run.error:
        print(f"pipetune: run {run.id} {run.status.value}: {run.error}", file=sys.stderr)


def cmd_runs(ns: argparse.Namespace) -> int:
    from pipetune.report import console, history
    from pipetune.store import open_store

    rows = open_store(ns.store).runs(limit=ns.limit)
    if ns.json:
        print(json.dumps([_row_dict(r) for r in rows], indent=1))
    elif rows:
        console().print(history(rows))
    else:
        print("no runs stored yet: `pipetune run SCRIPT` records one", file=sys.stderr)
    return 0


def _row_dict(row: Any) -> dict[str, Any]:
    return {**row.__dict__, "status": row.status.value}


def cmd_show(ns: argparse.Namespace) -> int:
    from pipetune.store import open_store

    run = open_store(ns.store).load(ns.run)
    _print_run(run, as_json=ns.json, width=ns.width)
    return 0


def cmd_tune(ns: argparse.Namespace) -> int:
    from pipetune.report import console, study_summary, study_view
    from pipetune.store import open_store
    from pipetune.tune import Tuner, apply_patch, result_of

    store = open_store(ns.store)
    say = (lambda line: None) if ns.json else None
    tuner = Tuner.using(store) if say is None else Tuner.using(store, say)
    tuner.warmup = not ns.no_warmup
    tuner.watch = None if ns.json else _trial_view(ns.full_names)
    study_id = _study_to_drive(ns, tuner)
    try:
        study = tuner.drive(study_id)
    except KeyboardInterrupt:
        print(f"pipetune: interrupted: every finished trial is stored; continue with "
              f"`pipetune tune --resume {study_id}`", file=sys.stderr)  # fmt: skip
        return 130
    if ns.confirm and study.incumbent() is not None:
        tuner.confirm(study_id)
        study = tuner.load(study_id)
    result = result_of(study, store)
    path = result.write_config(ns.output or store.path.parent / f"best-{study_id}.json")
    if ns.apply and result.patch is not None and result.patch.diff:
        apply_patch(result.patch)
    if ns.json:
        print(json.dumps(study_view(result, str(path.resolve())), indent=1))
    else:
        out = console()
        out.print(study_summary(result))
        out.print(f"best settings written to {path}: reuse them with `pipetune run --config {path} SCRIPT`")
        _print_patch(result, applied=ns.apply)
    return 0 if result.ok else 1


def _trial_view(full_names: bool) -> Any:
    """The live view of each trial, captioned with what the trial tries (the tune loop draws nothing itself)."""
    import contextlib

    from pipetune.report import LiveView

    @contextlib.contextmanager
    def watch(caption: str) -> Any:
        with LiveView(full_names=full_names) as view:
            view.state.caption = caption
            yield view

    return watch


def _study_to_drive(ns: argparse.Namespace, tuner: Any) -> str:
    if ns.resume:
        if ns.script is not None or ns.sets or ns.config:
            raise UsageError("--resume continues a study as it was started", "drop the script and --set/--config")
        return str(tuner.load(ns.resume).id)
    if ns.script is None:
        raise UsageError("tune needs a script (or --resume STUDY)", "pipetune tune my_pipeline.py --budget 3")
    if ns.budget < 1:
        raise UsageError(f"--budget {ns.budget} is not valid", "give at least 1 trial run")
    if ns.timeout is not None and ns.timeout <= 0:
        raise UsageError(f"--timeout {ns.timeout} is not valid", "give a number of seconds above 0")
    return str(
        tuner.create(
            ns.script,
            tuple(ns.script_args),
            _overrides(ns),
            budget=ns.budget,
            time_s=parse_duration(ns.time_budget) if ns.time_budget else None,
            address=ns.address,
            trial_timeout_s=ns.timeout,
            allow=tuple(ns.allow),
        )
    )


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h`` -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UsageError(f"--time {text} is not a duration", "write e.g. 90s, 10m or 1h")
    return value


def _print_patch(result: Any, applied: bool) -> None:
    patch = result.patch
    if patch is None or not patch.diff:
        print("no change to write into the script", file=sys.stderr)
        return
    print("\nwritten into the script:" if applied else "\nthe patch (`--apply` writes it into the script):")
    print(patch.diff, end="")
    for line in patch.unplaced:
        print(f"not placed: {line}", file=sys.stderr)


def cmd_lint(ns: argparse.Namespace) -> int:
    from pipetune.lint import lint_file
    from pipetune.record import local_gpus

    gpus = ns.gpus if ns.gpus is not None else local_gpus()
    results = [lint_file(path, gpus, fix=ns.fix) for path in ns.files]
    for result in results:
        if result.fixed is not None:
            Path(result.path).write_text(result.fixed)
    if ns.format == "json":
        rows = [{"path": r.path, **_plain(f), "fixable": f.fix is not None} for r in results for f in r.findings]
        print(json.dumps(rows, indent=1))
    else:
        for r in results:
            for f in r.findings:
                print(f.render(r.path))
        _lint_summary(results, ns.fix)
    return 1 if any(r.findings for r in results) else 0


def _plain(finding: Any) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "name": finding.name,
        "line": finding.line,
        "col": finding.col + 1,
        "message": finding.message,
    }


def _lint_summary(results: list[Any], fixed: bool) -> None:
    total = sum(len(r.findings) for r in results)
    fixable = sum(1 for r in results for f in r.findings if f.fix)
    done = sum(1 for r in results if r.fixed is not None)
    lines = [f"{total} finding(s)"]
    if fixable and not fixed:
        lines.append(f"{fixable} fixable with --fix (marked [*])")
    if done:
        lines.append(f"fixed {done} file(s)")
    print("; ".join(lines), file=sys.stderr)


def cmd_checklist(ns: argparse.Namespace) -> int:
    from pipetune.lint import State, checklist
    from pipetune.store import open_store

    run = open_store(ns.store).load(ns.run)
    script = Path(run.cwd) / run.script
    items = checklist(run, script.read_text() if script.is_file() else None)
    if ns.json:
        print(json.dumps([{"item": i.name, "state": i.state.value, "evidence": i.evidence} for i in items], indent=1))
    else:
        marks = {State.PASSED: "[x]", State.FAILED: "[ ]", State.UNKNOWN: "[?]"}
        print(f"production checklist for run {run.id} ({run.script})")
        for i in items:
            print(f"{marks[i.state]} {i.name}: {i.state.value}: {i.evidence}")
    return 1 if any(i.state is State.FAILED for i in items) else 0


def cmd_plan(ns: argparse.Namespace) -> int:
    from pipetune.plan import cluster as clusters
    from pipetune.plan import from_run, from_source, plan, with_loads
    from pipetune.report import console, plan_summary, plan_view

    if not ns.script.is_file():
        raise UsageError(f"{ns.script} does not exist", "pass the path of a Python file")
    run = _recorded(ns)
    stages = with_loads(from_run(run), from_source(ns.script)) if run else from_source(ns.script)
    where = (
        clusters.parse_cluster(ns.cluster) if ns.cluster else clusters.from_run(run) if run else clusters.this_machine()
    )
    result = plan(stages, where, ns.model, ns.resolution)
    basis = f"measured in run {run.id}" if run else "read from the source (no recorded run: types from the code)"
    if ns.json:
        print(json.dumps(plan_view(result, basis), indent=1))
    else:
        console().print(plan_summary(result, basis))
    return 0


def _recorded(ns: argparse.Namespace) -> Run | None:
    from pipetune.store import open_store

    store = open_store(ns.store)
    if ns.run:
        return store.load(ns.run)
    target = ns.script.resolve()
    for row in store.runs(limit=200):
        if row.status.ok and (Path(row.script).resolve() == target):
            return store.load(row.id)
    return None


def cmd_batch_size(ns: argparse.Namespace) -> int:
    from pipetune.plan import search
    from pipetune.record import check_script
    from pipetune.store import open_store

    script = check_script(ns.script)
    if ns.start < 1 or ns.rows < 1 or ns.max < ns.start:
        raise UsageError(
            f"--start {ns.start}, --rows {ns.rows}, --max {ns.max} is not a batch-size search",
            "give --start and --rows whole numbers of 1 or more, and --max one no smaller than --start",
        )
    say = (lambda line: None) if ns.json else (lambda line: print(line, file=sys.stderr, flush=True))
    result = search(open_store(ns.store), script, tuple(ns.script_args), ns.stage, ns.start, ns.rows, ns.address, say,
                    max_batch=ns.max)  # fmt: skip
    best = result.best
    if ns.json:
        view = {
            "stage": result.stage,
            "device": result.device,
            "note": result.note,
            "probes": [p.__dict__ for p in result.probes],
            "best": best.__dict__ if best else None,
        }
        print(json.dumps(view, indent=1))
    else:
        if best is None:
            print(f"no batch size of {result.stage} ran within 80% of a worker's memory")
        else:
            speed = f"{best.rows_per_s:,.0f} rows/s per task" if best.rows_per_s else "rate not measured"
            print(f"fastest batch size that fits for {result.stage}: {best.batch} ({speed})")
        if result.note:
            print(result.note)
    return 0 if best is not None else 1


def cmd_report(ns: argparse.Namespace) -> int:
    from pipetune.errors import RunNotFound
    from pipetune.report import run_report, study_report
    from pipetune.store import open_store
    from pipetune.tune import Study, result_of

    store = open_store(ns.store)
    try:
        study = Study.fold(*store.load_study(ns.id)) if ns.id not in ("last", "latest") else None
    except RunNotFound:
        study = None
    if study is not None:
        result = result_of(study, store)
        best = result.study.runs_of(result.best)
        page = study_report(result, store.load(best[-1].run_id) if best else None)
    else:
        page = run_report(store.load(ns.id))
    _write_output(ns.output, page)
    return 0


def cmd_trace(ns: argparse.Namespace) -> int:
    from pipetune.report import chrome_trace
    from pipetune.store import open_store

    _write_output(ns.output, json.dumps(chrome_trace(open_store(ns.store).load(ns.run))))
    return 0


def _write_output(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as err:
        raise UsageError(f"cannot write {path} ({err.strerror})", "choose a writable path with -o") from None
    print(f"wrote {path} ({len(text) / 1e6:.1f} MB)", file=sys.stderr)


def cmd_ui(ns: argparse.Namespace) -> int:
    from pipetune.ui import serve

    serve(ns.store, ns.host, ns.port)
    return 0


def cmd_studies(ns: argparse.Namespace) -> int:
    import time

    from pipetune.store import open_store
    from pipetune.tune import Study

    store = open_store(ns.store)
    for study_id, script, created in store.studies(ns.limit):
        study = Study.fold(*store.load_study(study_id))
        state = (study.finished or {}).get("reason", "not finished: resume with --resume")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
        print(f"{study_id}  {when}  {script}  {study.runs_used} trial run(s)  {state}")
    return 0


def cmd_stacks(ns: argparse.Namespace) -> int:
    from pipetune.model import EventKind
    from pipetune.record import stacks
    from pipetune.store import open_store

    run = open_store(ns.store).load(ns.run)
    if run.status.finished:
        captured = run.events_of(EventKind.STALL)
        for event in captured:
            print(f"{event.message}\n{event.detail}\n")
        if not captured:
            print(f"run {run.id} is {run.status.value} and the watchdog captured no stack", file=sys.stderr)
        return 0
    if stacks.py_spy() is None:
        raise UsageError("py-spy is not installed", "pip install py-spy")
    workers = stacks.busy_workers(list(run.env.raylet_pids.values()))
    for dumped in (stacks.dump(p) for p in workers):
        if dumped is not None:
            print(f"pid {dumped.pid} {dumped.title}: in {dumped.user_frame or '?'}\n{dumped.text}\n")
    if not workers:
        print(f"run {run.id}: no busy Ray worker of its session right now", file=sys.stderr)
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from pipetune.store import open_store

    run = open_store(ns.store).load(ns.run)
    run.save(ns.file)
    print(f"saved run {run.id} to {ns.file}", file=sys.stderr)
    return 0


def cmd_import(ns: argparse.Namespace) -> int:
    from pipetune.store import open_store

    try:
        run = Run.load(ns.file)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(
            f"{ns.file} is not a saved pipetune run ({err})", "export one with `pipetune export`"
        ) from None
    open_store(ns.store).add(run)
    print(f"imported run {run.id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
