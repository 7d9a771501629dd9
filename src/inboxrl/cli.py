"""``inboxrl`` command line: train | sft | eval | eval-reference | build-db | make-data | report | view.

Each command builds and validates only the settings sections it uses (``--help`` lists them,
grouped by section). Every command stops with one readable ``error: ...`` line and exit status
2 on a bad setting, a missing database or an unreadable data file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import (SECTIONS, DataConfig, EvalConfig, JudgeConfig, ModelConfig, RolloutConfig,
                                       RunConfig, SFTConfig, UpdateConfig)
from inboxrl.settings.sources import add_settings_arguments, settings_from_args
from inboxrl.utils.dist import launcher_rank

# the settings sections each command reads
TRAIN_SECTIONS = SECTIONS
SFT_SECTIONS = (RunConfig, DataConfig, JudgeConfig, ModelConfig, RolloutConfig, UpdateConfig, EvalConfig, SFTConfig)
EVAL_SECTIONS = (RunConfig, DataConfig, JudgeConfig, ModelConfig, RolloutConfig, EvalConfig)
EVAL_REFERENCE_SECTIONS = (RunConfig, DataConfig, JudgeConfig, RolloutConfig)


def cmd_train(args: argparse.Namespace) -> int:
    from inboxrl.run.train import run_training

    settings = settings_from_args(args, TRAIN_SECTIONS)
    run_training(settings, resume=args.resume, resume_from=args.resume_from, fresh=args.fresh)
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from inboxrl.logs.console import ConsoleLog
    from inboxrl.run.checks import usable_output_dir
    from inboxrl.run.data import resolve_data
    from inboxrl.run.warm_start import ensure_warm_start
    from inboxrl.sft.warm_start import cache_dir

    settings = settings_from_args(args, SFT_SECTIONS)
    usable_output_dir(settings.run.output_dir)  # before any model is loaded
    usable_output_dir(cache_dir(settings.sft.sft_cache_dir), "sft_cache_dir", "--sft-cache-dir")
    console = ConsoleLog(verbose=settings.run.verbose)
    data = resolve_data(settings.data, settings.run.seed)
    path = ensure_warm_start(settings, data, console, force=args.force)
    console.info(f"Warm-start model: {path}  (start GRPO from it with: inboxrl train --init-from {path})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from inboxrl.run.evaluate import run_eval_command

    return run_eval_command(args, settings_from_args(args, EVAL_SECTIONS))


def cmd_eval_reference(args: argparse.Namespace) -> int:
    from inboxrl.run.reference import run_eval_reference

    return run_eval_reference(args, settings_from_args(args, EVAL_REFERENCE_SECTIONS))


def cmd_build_db(args: argparse.Namespace) -> int:
    from inboxrl.ingest.readers import build_db
    from inboxrl.email.build_report import BuildOptions
    from inboxrl.run.checks import usable_output_dir

    usable_output_dir(Path(args.db).parent, "the directory of --db", "--db")
    options = BuildOptions(max_body_chars=args.max_body_chars, max_recipients=args.max_recipients,
                           order_by_date=args.order_by_date)
    report, ingest_report = build_db(args.source, kind=args.kind, db_path=args.db, owner=args.owner,
                                     options=options)
    print(ingest_report.summary())
    print(report.summary())
    if args.scenarios:
        from inboxrl.email.scenarios import load_scenarios
        from inboxrl.email.store import ambiguous_scenarios, check_scenarios

        scenarios = load_scenarios(args.scenarios)
        missing = check_scenarios(args.db, scenarios)
        shared = ambiguous_scenarios(args.db, scenarios)
        print(f"Integrity: {len(missing)} scenarios whose reference message is missing"
              + (f" (e.g. {', '.join(missing[:5])})" if missing else "")
              + f"; {len(shared)} whose reference id names more than one message of their inbox"
              + (f" (e.g. {', '.join(shared[:5])})" if shared else ""))
    return 0


def cmd_make_data(args: argparse.Namespace) -> int:
    from inboxrl.run.checks import usable_output_dir
    from inboxrl.synth.data import make_data

    usable_output_dir(args.out, "make-data output directory", "output directory")
    result = make_data(args.out, seed=args.seed, num_emails=args.num_emails)
    print(result)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from inboxrl.logs.report import write_report

    for path in write_report(args.output_dir):
        print(f"wrote {path}")
    return 0


def _settings_parsers(sub) -> None:
    p = sub.add_parser("train", help="GRPO training (the same as python train_grpo.py)")
    add_settings_arguments(p, TRAIN_SECTIONS)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.add_argument("--resume-from", default=None, help="continue from this checkpoint directory")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("sft", help="warm start: SFT on reference-agent demonstrations")
    add_settings_arguments(p, SFT_SECTIONS)
    p.add_argument("--force", action="store_true", help="rebuild even if a cached warm start exists")
    p.set_defaults(func=cmd_sft)
    p = sub.add_parser("eval", help="evaluate a model (local or OpenAI-compatible API) on validation scenarios")
    add_settings_arguments(p, EVAL_SECTIONS)
    p.add_argument("--api-base-url", default=None, help="evaluate an OpenAI-compatible endpoint instead")
    p.add_argument("--api-model", default=None, help="model name at that endpoint")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the API key")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("eval-reference", help="run the scripted reference agent over validation scenarios")
    add_settings_arguments(p, EVAL_REFERENCE_SECTIONS)
    p.add_argument("--agent-mode", default="read", choices=["read", "snippet"])
    p.set_defaults(func=cmd_eval_reference)


def _data_parsers(sub) -> None:
    p = sub.add_parser("build-db", help="build the SQLite FTS5 email store from real mail")
    p.add_argument("source", help="parquet file/dir, maildir tree, or mbox file")
    p.add_argument("--db", required=True, help="output database path")
    p.add_argument("--kind", default="auto", choices=["auto", "parquet", "maildir", "mbox"])
    p.add_argument("--owner", default=None, help="mailbox owner address (maildir / mbox)")
    p.add_argument("--max-body-chars", type=int, default=20000, help="truncate longer bodies")
    p.add_argument("--max-recipients", type=int, default=30,
                   help="skip mass mails with more to+cc+bcc addresses (counted in the report; ~1%% of a real mailbox)")
    p.add_argument("--order-by-date", action="store_true",
                   help="number messages by date: faster searches of frequent words and names, slower build")
    p.add_argument("--scenarios", default=None, help="check these scenarios' reference messages exist")
    p.set_defaults(func=cmd_build_db)
    p = sub.add_parser("make-data", help="generate a deterministic synthetic inbox + scenarios")
    p.add_argument("out", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-emails", type=int, default=2000)
    p.set_defaults(func=cmd_make_data)
    p = sub.add_parser("report", help="print the eval trend and write reward/accuracy plots")
    p.add_argument("output_dir")
    p.set_defaults(func=cmd_report)


def _view_parser(sub) -> None:
    from inboxrl.view.cli import add_arguments

    p = sub.add_parser("view", help="write an HTML run viewer into OUTPUT_DIR/view (steps, groups, turns, evals)")
    add_arguments(p)
    p.set_defaults(func=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    from inboxrl.view.cli import main as view_main

    return view_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inboxrl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _settings_parsers(sub)
    _data_parsers(sub)
    _view_parser(sub)
    return parser


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as e:
        rank = launcher_rank()  # under torchrun: rank 0 reports what every rank found
        if rank == 0 or not e.same_on_every_rank:
            print(f"error: {e}" if rank == 0 else f"error (rank {rank}): {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # data errors from ingest/store/scenarios carry readable messages
        if type(e).__name__ in {"StoreError", "ScenarioError", "IngestError", "ReportError"}:
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
