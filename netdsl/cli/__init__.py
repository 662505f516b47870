"""The `netdsl` command: the only place that knows about argv, flags, printing and exit codes.

The outermost layer. `main` builds the parser from the command modules (`core`: check,
summary, zoo; `deploy`: compile, engine; `run`: run, bench; `compare`; `train`; `share`: draw,
export; `explain`: the visualisations of a trained model; `completion`: shell scripts), runs
the chosen handler and turns what it raises into an exit code:

    0  success (warnings included)
    1  an error in a net, a model, a dataset or another input (a `NetError`, with flag advice
       from `advice.py` appended)
    2  a usage error: a bad flag or value (argparse), or an optional package the command needs
       is not installed (`pip install 'netdsl[EXTRA]'`)
    3  an internal error: a bug in netdsl (the traceback only with NETDSL_DEBUG=1)

Heavy libraries are imported by the handlers, so `netdsl check` stays light; each command
declares the extras it needs, checked before it starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from netdsl import __version__
from netdsl.cli.advice import advise
from netdsl.cli.options import overrides, parse_value, require
from netdsl.errors import MissingExtra, missing_extra
from netdsl.source import NetError

__all__ = ["build_parser", "main", "overrides", "parse_value"]

OK, ERROR, USAGE, BUG = 0, 1, 2, 3
RANK = {"onnx": 0, "run": 1, "train": 2}  # each extra brings the modules of those before it


def build_parser() -> argparse.ArgumentParser:
    from netdsl.cli import compare, completion, core, deploy, explain, run, share, train

    parser = argparse.ArgumentParser(
        prog="netdsl",
        description="Describe a CNN in a few lines; check its shapes, summarise it, compile it.",
    )
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    core.register(sub)  # the order of `netdsl --help`
    deploy.register_compile(sub)
    run.register_run(sub)
    train.register(sub)
    deploy.register_engine(sub)
    compare.register(sub)
    share.register(sub)
    explain.register(sub)
    completion.register(sub)
    return parser


def check_extras(args: argparse.Namespace) -> None:
    """Refuse to start a command whose optional packages are missing. `needs` is the extra
    that brings everything the command uses, and the modules to look for."""
    needs = getattr(args, "needs", None)
    if needs is not None:
        require(needs[0], needs[1], f"netdsl {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_extras(args)
        code: int = args.func(args)
        return code
    except MissingExtra as error:
        print(error.render(), file=sys.stderr)
        return USAGE
    except NetError as error:
        print(advise(error, args.command).render(), file=sys.stderr)
        return ERROR
    except ModuleNotFoundError as error:
        missing = missing_extra(error, f"netdsl {args.command}")
        if missing is None:
            return _bug(error)
        needs = getattr(args, "needs", None)
        if needs is not None and RANK.get(needs[0], 0) > RANK.get(missing.extra or "", 0):
            missing = MissingExtra(missing.modules, needs[0], f"netdsl {args.command}")
        print(missing.render(), file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return OK
    except MemoryError:
        # sizes are checked before the large allocations; this catches what slips past them
        print(
            f"error: netdsl {args.command} ran out of memory\n"
            "  note: try a smaller net, batch or dataset",
            file=sys.stderr,
        )
        return ERROR
    except Exception as error:  # a bug in netdsl, not in the user's net
        return _bug(error)


def _bug(error: BaseException) -> int:
    if os.environ.get("NETDSL_DEBUG"):
        raise error
    print(
        f"netdsl: internal error: {type(error).__name__}: {error}\n"
        "this is a bug in netdsl; rerun with NETDSL_DEBUG=1 for the traceback",
        file=sys.stderr,
    )
    return BUG


if __name__ == "__main__":
    sys.exit(main())
