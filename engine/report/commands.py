"""The `evaluate` subcommand of `python -m engine` (engine/cli.py adds it). Parser only: torch
and the engines are imported when it runs."""

from __future__ import annotations


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "evaluate", help="run every engine of every case and write one report: index.md, "
                         "contact sheets, flow histograms, results.json (docs/EVALUATE.md)")
    parser.add_argument("--cases", required=True, metavar="CASES.json",
                        help="the case file (tools/eval_cases.json is the shipped one)")
    parser.add_argument("--out", required=True, help="report folder to create")
    parser.add_argument("--only", action="append", metavar="CASE",
                        help="evaluate only this case (repeat for several)")
    parser.add_argument("--resolution", type=int, default=0,
                        help="the still's longer side for every case (default: each case's)")
    parser.add_argument("--samples", type=int, default=0,
                        help="samples per sampling engine for every case (default: each case's)")
    parser.add_argument("--frames", type=int, default=0,
                        help="frames per clip for every case (default: each case's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.set_defaults(command=_evaluate)


def _evaluate(args, progress) -> int:
    from engine.report.evaluate import run

    return run(args, progress)
