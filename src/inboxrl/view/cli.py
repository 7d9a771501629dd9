"""The ``inboxrl view`` verb: arguments, the build, and its one-line errors (exit 2)."""
from __future__ import annotations

import argparse
import sys

from inboxrl.view.build import BuildReport, ViewError, ViewSettings, build_view


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("output_dir", help="the run's output directory (finished or still going)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer directory for the token view (default: found from the run's settings)")
    p.add_argument("--workers", type=int, default=0, help="build processes (0 = one per CPU, at most 8)")
    p.add_argument("--rebuild", action="store_true", help="rebuild every page, even unchanged ones")
    p.add_argument("--serve", nargs="?", type=int, const=8765, default=None, metavar="PORT",
                   help="serve the viewer on 127.0.0.1:PORT (default 8765), rebuilding on each page load")


def print_report(report: BuildReport) -> None:
    for line in report.notes:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"Wrote {report.index} ({report.steps} step pages, {report.evals} eval pages, "
          f"{report.rollouts} rollout pages built, {report.reused} unchanged steps/evals reused) "
          f"in {report.seconds:.1f}s")


def main(args: argparse.Namespace) -> int:
    if args.workers < 0:
        print("error: --workers must be >= 0", file=sys.stderr)
        return 2
    settings = ViewSettings(tokenizer=args.tokenizer, workers=args.workers, reuse=not args.rebuild)
    try:
        report = build_view(args.output_dir, settings)
    except ViewError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_report(report)
    if args.serve is not None:
        from inboxrl.view.serve import serve

        return serve(args.output_dir, settings, args.serve)
    return 0
