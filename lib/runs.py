"""The run registry's command line: launch, list, show, cancel, resume and delete runs, and diff two.

``python -m lib.runs {launch,sweep,list,show,annotate,estimate,cancel,resume,delete,diff} --runs-dir DIR ...``
(run it with ``--help``). The work is done by :mod:`lib.registry`; ``diff RUN_A RUN_B`` (reviews run B fixed
and broke on the same eval split) by :mod:`lib.readers.diff`. With ``LAB_BACKEND=slurm`` the list has a JOB
column (the Slurm job id) and ``show`` prints the job, Slurm's state and reason, and the job's nodes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.config import PRESETS, TrainConfig, build_config, preset
from lib.errors import LabError, RunError
from lib.registry import backend as backends
from lib.registry import estimate, notes, sweeps
from lib.registry.control import CANCEL_GRACE_S, cancel, delete
from lib.registry.launching import _user, launch, resume
from lib.registry.reconcile import RunView, list_runs, view
from lib.registry.sweeps import MAX_SWEEP_RUNS
from lib.store import rundir
from lib.util.fmt import format_duration, format_time


def _progress_text(row: RunView) -> str:
    if row.total_steps:
        return f"{row.step}/{row.total_steps}"
    if row.state == "queued" and row.queue_position:
        return f"queue #{row.queue_position}"
    return "-"


def _print_table(rows: list[RunView], *, job_column: bool = False) -> None:
    headers = ["ID", "STATE", "PROGRESS", "OWNER", "MODEL", "DATASET", "STARTED", "DURATION", "BEST ACC", "LABEL"]
    table = [[r.run_id, r.display_state, _progress_text(r), r.owner or "-", r.model, r.dataset,
              format_time(r.started_at, missing="-"), format_duration(r.duration_s, missing="-"),
              f"{r.best_eval_accuracy:.4f}" if r.best_eval_accuracy is not None else "-", r.label]
             for r in rows]
    if job_column:  # the Slurm job id, after the run id
        headers.insert(1, "JOB")
        for r, row in zip(rows, table):
            row.insert(1, r.slurm_job_id or "-")
    clean = [[str(c).replace("\n", " ").replace("\t", " ")[:60] for c in row] for row in table]
    widths = [max([len(h)] + [len(row[i]) for row in clean]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in clean:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _row_json(row: RunView) -> dict:
    out = row.to_json()
    out.pop("status", None)
    out.pop("config", None)
    out["sweep_id"] = row.config.get("sweep_id") or None
    out["sweep_point"] = row.config.get("sweep_point") or None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib.runs", description="Launch, list, cancel, resume and delete "
                                "training runs in a shared runs directory.")
    p.add_argument("--runs-dir", default=None, help="the runs directory (default $LAB_RUNS_DIR or ./runs)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--runs-dir", default=argparse.SUPPRESS, help="the runs directory")
        return sp

    sp = add("launch", "start a training run in the background and print its id (last line)")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset (default: demo)")
    src.add_argument("--config", metavar="FILE.json", help="a saved TrainConfig (for example a run's config.json)")
    sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field (repeatable)")
    sp.add_argument("--owner", default=None, help="who launches it (default: the config's owner, else your user name)")
    sp = add("list", "list the runs, newest first")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--sweep", metavar="SWEEP_ID", help="only the runs of this sweep (in launch order)")
    sp.add_argument("--tag", action="append", default=[], metavar="TAG",
                    help="only runs with this tag (repeatable: runs with all of them)")
    sp = add("sweep", "launch one run per combination of grid values (in order, on the queue); prints the sweep id "
                      "(exit code 3 when a quota refused part of it: the runs not launched are listed)")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset (default: demo)")
    src.add_argument("--config", metavar="FILE.json", help="a saved TrainConfig")
    sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field for every run (repeatable)")
    sp.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", required=True,
                    help=f"a field and its values (repeatable; every combination, at most {MAX_SWEEP_RUNS} runs)")
    sp.add_argument("--owner", default=None, help="who launches it (default: the config's owner, else your user name)")
    sp = add("annotate", "set a run's note and tags (owner or admin)")
    sp.add_argument("run_id")
    sp.add_argument("--note", default=None, help="the note (replaces the old one; '' clears it)")
    sp.add_argument("--tag", action="append", default=[], metavar="TAG", help="add a tag (repeatable)")
    sp.add_argument("--untag", action="append", default=[], metavar="TAG", help="remove a tag (repeatable)")
    sp = add("estimate", "measure a config with a short dry run: seconds per step, time to finish, peak memory")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset (default: demo)")
    src.add_argument("--config", metavar="FILE.json", help="a saved TrainConfig")
    sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field (repeatable)")
    sp.add_argument("--budget", type=float, default=30.0, help="seconds the dry run may take (about; default 30)")
    sp.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a busy device (default 10)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp = add("show", "show one run's status")
    sp.add_argument("run_id")
    sp.add_argument("--json", action="store_true", help="print the status object as JSON")
    sp = add("cancel", "stop a queued or running run")
    sp.add_argument("run_id")
    sp.add_argument("--grace", type=float, default=CANCEL_GRACE_S, help="seconds between SIGTERM and SIGKILL")
    sp = add("resume", "continue a failed or cancelled run from its newest complete checkpoint")
    sp.add_argument("run_id")
    sp = add("delete", "delete a run that is not queued or running")
    sp.add_argument("run_id")
    sp = add("diff", "which eval reviews run B fixed (wrong in A, right in B) and broke (the reverse)")
    sp.add_argument("run_a", metavar="RUN_A")
    sp.add_argument("run_b", metavar="RUN_B")
    sp.add_argument("--json", action="store_true", help="print JSON: counts and every fixed, broken and both-wrong "
                    "review")
    sp.add_argument("--limit", type=int, default=None, metavar="N",
                    help="list at most N reviews of each kind (the counts stay complete; default: 10 in text, "
                         "all with --json)")
    return p


def _print_diff(d: dict, limit: int) -> None:
    names = d.get("label_names") or []

    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    c = d["counts"]
    print(f"A {d['run_a']}: accuracy {d['accuracy_a']:.4f}   B {d['run_b']}: accuracy {d['accuracy_b']:.4f}   "
          f"on the same {d['n']:,} eval reviews")
    print(f"fixed {c['fixed']}  broken {c['broken']}  both wrong {c['both_wrong']}  both right {c['both_right']}  "
          f"predictions changed {c['changed']}")
    for kind, title in (("fixed", "fixed (wrong in A, right in B)"), ("broken", "broken (right in A, wrong in B)")):
        rows = d[kind][:limit]
        if not rows:
            continue
        print(f"\n{title}:")
        for r in rows:
            text = " ".join(r["text"].split())
            text = text[:100] + ("…" if len(text) > 100 else "")
            conf_a = f" {r['confidence_a']:.2f}" if r["confidence_a"] is not None else ""
            conf_b = f" {r['confidence_b']:.2f}" if r["confidence_b"] is not None else ""
            print(f"  #{r['index']} true {name(r['label'])}: A {name(r['pred_a'])}{conf_a}, "
                  f"B {name(r['pred_b'])}{conf_b}  {text}")
        if c[kind] > len(rows):
            print(f"  … {c[kind] - len(rows)} more (--limit N, or --json for all)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs_dir = Path(args.runs_dir).expanduser().resolve() if args.runs_dir else rundir.default_runs_dir()
    try:
        if args.command == "launch":
            config = TrainConfig.load(args.config) if args.config else preset(args.preset or "demo")
            config = config.with_overrides(args.overrides)
            owner = args.owner if args.owner is not None else (config.owner or _user())
            warning = backends.startup_warning(runs_dir) if backends.is_slurm() else None
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
            run_dir = launch(config, runs_dir, owner=owner, launched_by=f"cli:{_user()}")
            print(f"launched run {run_dir.name} in {runs_dir} (log: {run_dir / rundir.LOG})", file=sys.stderr)
            print(run_dir.name)
        elif args.command == "list":
            rows = list_runs(runs_dir)
            if args.sweep:
                rows = sweeps.sweep_runs(rows, args.sweep)
            if args.tag:
                wanted = [notes.normalise_tag(t) for t in args.tag]
                rows = [r for r in rows if all(t in r.tags for t in wanted)]
            if args.json:
                print(rundir.dumps([_row_json(r) for r in rows], indent=2))
            elif rows:
                _print_table(rows, job_column=backends.is_slurm() or any(r.backend == backends.SLURM for r in rows))
                slurm_notes = {r.status.get("slurm_note") for r in rows if r.status.get("slurm_note")}
                for note in sorted(slurm_notes):
                    print(f"note: {note}", file=sys.stderr)
            else:
                print(f"no runs in {runs_dir}", file=sys.stderr)
        elif args.command == "show":
            run_dir = rundir.resolve_run_dir(runs_dir, args.run_id)
            row = view(run_dir)
            if args.json:
                print(rundir.dumps({**row.status, "note": row.note, "tags": list(row.tags),
                                    "sweep_id": row.config.get("sweep_id") or None,
                                    "sweep_point": row.config.get("sweep_point") or None}, indent=2))
            else:
                for key, value in (("id", row.run_id), ("label", row.label), ("owner", row.owner),
                                   ("state", row.display_state), ("model", row.model), ("dataset", row.dataset)):
                    print(f"{key:>10}: {value}")
                print(f"{'progress':>10}: {_progress_text(row)}")
                print(f"{'started':>10}: {format_time(row.started_at, missing='-')}  "
                      f"duration {format_duration(row.duration_s, missing='-')}")
                if row.best_eval_accuracy is not None:
                    print(f"{'best acc':>10}: {row.best_eval_accuracy:.4f}")
                print(f"{'backend':>10}: {row.backend}")
                if row.backend == backends.SLURM:
                    print(f"{'job':>10}: {row.slurm_job_id or '- (not submitted yet)'}")
                    print(f"{'slurm':>10}: {row.slurm_state or ('-' if row.active else 'the job has ended')}")
                    if row.slurm_reason:
                        print(f"{'reason':>10}: {row.slurm_reason}")
                    print(f"{'nodes':>10}: {row.nodes or '-'}")
                    if row.status.get("slurm_note"):
                        print(f"{'note':>10}: {row.status['slurm_note']}")
                if row.status.get("stopped_early"):
                    print(f"{'stopped':>10}: early, at step {row.status.get('stopped_at_step')} (best checkpoint "
                          f"{row.status.get('best_checkpoint')} kept and exported)")
                if row.config.get("sweep_id"):
                    point = sweeps.point_text(row.config.get("sweep_point") or {})
                    print(f"{'sweep':>10}: {row.config['sweep_id']} ({point})")
                if row.tags:
                    print(f"{'tags':>10}: {', '.join(row.tags)}")
                if row.note:
                    print(f"{'note':>10}: {row.note}")
                if row.error:
                    print(f"{'error':>10}: {row.error.get('message', '')}")
                    if row.error.get("hint"):
                        print(f"{'hint':>10}: {row.error['hint']}")
        elif args.command == "sweep":
            base = build_config(None if args.config else (args.preset or "demo"), args.config, args.overrides)
            owner = args.owner if args.owner is not None else (base.owner or _user())
            plan = sweeps.plan_sweep(base, sweeps.parse_grid(args.grid))
            result = sweeps.launch_sweep(plan, runs_dir, owner=owner, launched_by=f"cli:{_user()}")
            for point, run_dir in result.launched:
                print(f"launched run {run_dir.name}: {sweeps.point_text(point)}", file=sys.stderr)
            for point, reason in result.refused:
                print(f"not launched: {sweeps.point_text(point)}: {reason}", file=sys.stderr)
            print(f"sweep {result.sweep_id}: {len(result.launched)} of {plan.n_runs} run(s) launched in {runs_dir}",
                  file=sys.stderr)
            print(result.sweep_id)
            if result.refused:
                return 3
        elif args.command == "annotate":
            if args.note is None and not args.tag and not args.untag:
                raise LabError("give --note TEXT and/or --tag TAG / --untag TAG")
            stored = notes.annotate(rundir.resolve_run_dir(runs_dir, args.run_id), note=args.note, add_tags=args.tag,
                                    remove_tags=args.untag)
            print(rundir.dumps({"run_id": args.run_id, "note": stored["note"], "tags": stored["tags"]}))
        elif args.command == "estimate":
            config = build_config(None if args.config else (args.preset or "demo"), args.config, args.overrides)
            result = estimate.estimate(config, runs_dir, budget_s=args.budget, wait_s=max(0.0, args.wait))
            if args.json:
                print(rundir.dumps(result, indent=2))
            else:
                for line in estimate.summary_lines(result):
                    print(line)
        elif args.command == "cancel":
            status = cancel(rundir.resolve_run_dir(runs_dir, args.run_id), grace_s=max(0.0, args.grace),
                            by=f"cli:{_user()}")
            print(f"run {args.run_id}: {status.get('state')}")
        elif args.command == "resume":
            run_dir = resume(rundir.resolve_run_dir(runs_dir, args.run_id), launched_by=f"cli:{_user()}")
            print(f"resumed run {run_dir.name}", file=sys.stderr)
            print(run_dir.name)
        elif args.command == "diff":
            from lib.readers.diff import diff_runs
            if args.limit is not None and args.limit < 0:
                raise RunError(f"--limit must be 0 or more, got {args.limit}")
            run_a, run_b = (rundir.resolve_run_dir(runs_dir, r) for r in (args.run_a, args.run_b))
            result = diff_runs(run_a, run_b, limit=args.limit if args.json else None)
            if args.json:
                print(rundir.dumps(result, indent=2))
            else:
                _print_diff(result, 10 if args.limit is None else args.limit)
        elif args.command == "delete":
            delete(rundir.resolve_run_dir(runs_dir, args.run_id))
            print(f"deleted run {args.run_id}")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI prints a short message, never a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
