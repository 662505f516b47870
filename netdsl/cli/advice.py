"""Flag advice: the command line's half of `netdsl.errors`.

The library raises `Advisable` errors that state the facts; this table says which flag of the
command line fixes each, and `advise` appends that as a note before the error is printed (in
place of a library note that names the API's keyword for the same remedy). The
flag names live here and in the command modules only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from netdsl import errors
from netdsl.source import NetError


def _fit(facts: dict[str, Any], command: str) -> str:
    flag = "--calib-fit" if command in ("compile", "engine") else "--fit"
    ways = {
        "resize": f"{flag} resize (bilinear)",
        "pad": f"{flag} pad (centre in zeros)",
    }
    chosen = [ways[w] for w in facts.get("fits", ("resize", "pad")) if w in ways]
    return f"pass {' or '.join(chosen)}" if chosen else ""


def _lr(facts: dict[str, Any], command: str) -> str:
    lr = facts.get("lr")
    return "try a lower --lr" + (f" (it was {lr:g})" if isinstance(lr, (int, float)) else "")


def _batch(facts: dict[str, Any], command: str) -> str:
    batch = facts.get("batch", "B")
    return f"bench it with --batch {batch}, or compile it without --fixed-batch"


def _classes(facts: dict[str, Any], command: str) -> str:
    return f"set the number of classes, e.g. --set classes={facts.get('classes', 'N')}"


def _data(facts: dict[str, Any], command: str) -> str:
    if command == "train":
        return "pass --download to fetch the files (checksummed)"
    return "fetch them once with `netdsl train ... --data mnist:DIR --download`"


# Each class of netdsl.errors -> its advice, given the error's facts and the command's name.
Advice = Callable[[dict[str, Any], str], str]
ADVICE: dict[type[errors.Advisable], Advice] = {
    errors.WeightsMismatch: lambda _, __: (
        "pass --skip-mismatched to keep fresh weights for them (to fine-tune with a new head)"
    ),
    errors.Diverged: _lr,
    errors.FixedBatch: _batch,
    errors.NeedsInference: lambda _, __: "compile it without --training-form",
    errors.DataMissing: _data,
    errors.NoCheckpoint: lambda _, __: "pass the --out folder of the run to continue",
    errors.ImageSizeMismatch: _fit,
    errors.ClassCount: _classes,
}

# The keyword arguments an API user would pass instead: a library note naming one of these is
# the API's wording of the same advice, so the command line shows its flag instead.
KEYWORDS: dict[type[errors.Advisable], str] = {
    errors.WeightsMismatch: "skip_mismatched=",
    errors.FixedBatch: "batch=",
    errors.NeedsInference: "mode=",
    errors.DataMissing: "download=",
    errors.ImageSizeMismatch: "fit=",
}


def advise(error: NetError, command: str = "") -> NetError:
    """The error with the command line's advice for `command` appended to its first
    diagnostic."""
    if not isinstance(error, errors.Advisable) or not error.diagnostics:
        return error
    note = next(
        (text(error.facts, command) for kind, text in ADVICE.items() if isinstance(error, kind)), ""
    )
    first = error.diagnostics[0]
    if not note or note in first.notes:
        return error
    keyword = next((k for kind, k in KEYWORDS.items() if isinstance(error, kind)), None)
    kept = tuple(n for n in first.notes if keyword is None or keyword not in n)
    return NetError((replace(first, notes=(*kept, note)), *error.diagnostics[1:]))
