"""``olmoflow run | demo | lineage | fork | report | release``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from importlib import resources
from pathlib import Path

from olmoflow.errors import OlmoflowError

__all__ = ["demo_main", "fork_main", "lineage_main", "print_next_steps", "release_main", "report_main", "run_main"]


def _default_workdir(flow: Path) -> Path:
    return Path("runs") / flow.stem


def _finish(workdir: Path, quiet: bool) -> tuple[Path | None, str | None]:
    """Write REPORT.md after a run; a broken report never fails the run."""
    from olmoflow.flow.report import write_report

    try:
        path, sample = write_report(workdir)
    except Exception as e:  # noqa: BLE001
        print(f"olmoflow: warning: could not write REPORT.md: {type(e).__name__}: {e}", file=sys.stderr)
        return None, None
    if not quiet:
        print(f"report: {path}")
    return path, sample


def run_main(argv: list[str]) -> int:
    """olmoflow run FLOW.yaml [--workdir DIR] [--dry-run] [--quiet] [stage.key=value ...]"""
    ap = argparse.ArgumentParser(prog="olmoflow run", usage="%(prog)s [-h] [--workdir WORKDIR] [--dry-run] [--quiet] "
                                 "[--force STAGE] flow [overrides ...]", description="Run a flow file: stages in dependency "
                                 "order, skipping those whose config and inputs are unchanged.")
    ap.add_argument("flow", type=Path, nargs="?", help="flow file (YAML)")
    ap.add_argument("overrides", nargs="*", help="STAGE.key.path=value (stage config), STAGE.inputs.NAME=ref, seed=N")
    ap.add_argument("--workdir", type=Path, default=None, help="where artifacts go (default: runs/<flow name>)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan (and GPU-hour estimate); run nothing")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    ap.add_argument("--variant", default=None, help="a named variant of the flow (its 'variants:' entry), "
                    "applied before the command line's overrides")
    ap.add_argument("--force", action="append", default=[], metavar="STAGE",
                    help="run STAGE and every stage that depends on it again, although cached (repeatable)")
    args = ap.parse_intermixed_args(argv)
    if args.flow is None:  # (argparse would also call the optional overrides "required")
        ap.error("the following arguments are required: flow")
    from olmoflow.flow.runner import run_flow
    from olmoflow.flow.spec import load_flow

    spec = load_flow(args.flow, args.overrides, variant=args.variant)
    workdir = args.workdir or _default_workdir(args.flow)
    run_flow(spec, workdir, quiet=args.quiet, dry_run=args.dry_run, force=args.force)
    if not args.dry_run:
        _finish(workdir, args.quiet)
    return 0


def tiny_flow_path() -> Path:
    """The packaged ``tiny.yaml`` (works from an installed wheel as well as a checkout)."""
    ref = resources.files("olmoflow") / "flows" / "tiny.yaml"
    with resources.as_file(ref) as p:
        return Path(p)


def demo_main(argv: list[str]) -> int:
    """olmoflow demo [--workdir DIR] [--quiet] [stage.key=value ...]"""
    ap = argparse.ArgumentParser(prog="olmoflow demo", description="Run the tiny end-to-end flow (demo corpus "
                                 "-> curate -> tokenizer -> tokenize/mix -> pretrain -> evaluate -> export).")
    ap.add_argument("overrides", nargs="*", help="STAGE.key.path=value overrides of flows/tiny.yaml")
    ap.add_argument("--workdir", type=Path, default=None, help="default: ./olmoflow-demo-<timestamp>")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--quick", action="store_true", help="the same flow at smoke-test size (tiny.yaml's 'quick' "
                    "variant: a few minutes, numbers not meaningful)")
    ap.add_argument("--serve", action="store_true", help="when the flow finishes, serve its final model "
                    "(`olmoflow serve`: OpenAI API + web chat on 127.0.0.1) until Ctrl-C")
    ap.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000)")
    args = ap.parse_intermixed_args(argv)
    from olmoflow.flow.runner import run_flow
    from olmoflow.flow.spec import load_flow

    workdir = args.workdir or Path(f"olmoflow-demo-{dt.datetime.now():%Y%m%d-%H%M%S}")
    spec = load_flow(tiny_flow_path(), args.overrides, variant="quick" if args.quick else None)
    run_flow(spec, workdir, quiet=args.quiet)
    path, sample = _finish(workdir, quiet=True)
    print(f"report: {path}")
    if sample is not None:
        print("sample generation:\n" + sample)
    model = print_next_steps(workdir)
    if args.serve:
        if model is None:
            raise OlmoflowError(f"{workdir}: the flow made no model to serve")
        from olmoflow.serve.cli import main as serve_main

        print(f"serving it: open http://127.0.0.1:{args.port}/ (Ctrl-C stops)", flush=True)
        return serve_main(["--model", str(model), "--port", str(args.port), "--served-model-name", "olmoflow-demo"])
    return 0


def print_next_steps(workdir: Path) -> Path | None:
    """Print the flow's final model (the last completed stage that wrote a model checkpoint) and the
    commands to chat with, serve and evaluate it; return its path (None, printing nothing, if the
    run made no model). Called at the end of ``olmoflow demo``."""
    from olmoflow.flow.card import final_model, next_commands
    from olmoflow.flow.report import load_state, stage_artifacts

    workdir = Path(workdir).resolve()
    state = load_state(workdir)
    arts = stage_artifacts(workdir, state)
    found = final_model(state, arts)
    if found is None:
        return None
    stage, model = found
    print(f"final model ({stage}, artifact {arts[stage][1]['id'][:12]}): {model}")
    for what, cmd in next_commands(model, workdir)[:3]:
        print(f"  {cmd}    # {what}")
    return model


def lineage_main(argv: list[str]) -> int:
    """olmoflow lineage ARTIFACT_DIR_OR_ID [--workdir DIR] [--format text|dot]"""
    ap = argparse.ArgumentParser(prog="olmoflow lineage", description="Print the chain of artifacts and raw "
                                 "sources an artifact was made from.")
    ap.add_argument("artifact", help="artifact directory (or a path inside one), or an artifact id / prefix")
    ap.add_argument("--workdir", type=Path, default=None, help="where to look ids up (default: ., ./*, ./runs/* "
                    "and $OLMOFLOW_WORKDIR)")
    ap.add_argument("--format", choices=["text", "dot"], default="text")
    args = ap.parse_intermixed_args(argv)
    from olmoflow.flow.lineage import build_lineage, format_dot, format_text, resolve_artifact

    d = resolve_artifact(args.artifact, args.workdir)
    lin = build_lineage(d, args.workdir)
    print(format_dot(lin) if args.format == "dot" else format_text(lin))
    return 0


def fork_main(argv: list[str]) -> int:
    """olmoflow fork --from ARTIFACT_OR_CHECKPOINT --flow FLOW.yaml [--workdir DIR] [--stage NAME]"""
    ap = argparse.ArgumentParser(prog="olmoflow fork", description="Run a flow whose checkpoint-consuming stage "
                                 "starts from the given artifact or checkpoint; manifests record the origin.")
    ap.add_argument("--from", dest="origin", required=True, help="artifact dir, checkpoint dir, or artifact id")
    ap.add_argument("--flow", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, default=None, help="default: runs/<flow name>-fork")
    ap.add_argument("--stage", default=None, help="stage to start from the checkpoint (default: the flow's "
                    "'fork:' entry, else the first stage that takes a checkpoint)")
    ap.add_argument("--origin-workdir", type=Path, default=None, help="where to look --from up when it is an id")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--variant", default=None, help="a named variant of the flow (its 'variants:' entry)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args(argv)
    from olmoflow.flow.lineage import resolve_artifact
    from olmoflow.flow.runner import run_flow
    from olmoflow.flow.spec import load_flow

    origin = Path(args.origin)
    if not origin.exists():
        origin = resolve_artifact(args.origin, args.origin_workdir)
    spec = load_flow(args.flow, args.overrides, variant=args.variant)
    workdir = args.workdir or Path("runs") / f"{args.flow.stem}-fork"
    run_flow(spec, workdir, quiet=args.quiet, dry_run=args.dry_run, fork_from=origin, fork_stage=args.stage)
    if not args.dry_run:
        _finish(workdir, args.quiet)
    return 0


def report_main(argv: list[str]) -> int:
    """olmoflow report WORKDIR"""
    ap = argparse.ArgumentParser(prog="olmoflow report", description="Write WORKDIR/REPORT.md from the last run.")
    ap.add_argument("workdir", type=Path)
    args = ap.parse_intermixed_args(argv)
    from olmoflow.flow.report import write_report

    if not args.workdir.is_dir():
        raise OlmoflowError(f"{args.workdir}: no such directory")
    path, _ = write_report(args.workdir)
    print(path)
    return 0


def release_main(argv: list[str]) -> int:
    """olmoflow release WORKDIR --out DIR"""
    ap = argparse.ArgumentParser(prog="olmoflow release", description="Gather final weights (HF format), "
                                 "tokenizer, configs, data manifests, reports, logs and a model card.")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--force", action="store_true", help="replace an existing --out directory")
    args = ap.parse_intermixed_args(argv)
    from olmoflow.flow.release import make_release

    out = make_release(args.workdir, args.out, force=args.force)
    print(out)
    return 0
