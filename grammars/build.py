"""Build step: the LALR tables of `net.lark`, written as a JSON file that ships with netdsl.

netdsl's parser (`netdsl/parse.py`) loads these tables instead of building them from the grammar
at every start, and instead of lark's `cache=True`, which unpickles a file from the shared temp
folder (a file any local user can plant). The tables are data in `net_tables.json`, package data
beside the grammar; nothing is unpickled and no code is run to read them. They are stamped with
the grammar's SHA-256 and lark's version: `parse.py` uses them only when both match and
otherwise builds the tables from the grammar (slower, never wrong). A test checks that the
committed file holds what this script writes.

    python -m netdsl.grammars.build    # rewrite grammars/net_tables.json after editing net.lark
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

from netdsl.parse import OPTIONS, _Newlines, grammar_hash, grammar_text


def tables() -> dict[str, Any]:
    """The tables of the grammar, stamped, for the lark installed now."""
    text = grammar_text()
    # the postlexer decides which terminals the lexer keeps, so it is part of the build
    parser = lark.Lark(text, postlex=_Newlines(), **OPTIONS)
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}
    return {
        "generated_by": "python -m netdsl.grammars.build; do not edit",
        "grammar_sha256": grammar_hash(text),
        "lark_version": lark.__version__,
        "data": data,
        "memo": memo,
    }


def main() -> int:
    target = Path(__file__).with_name("net_tables.json")
    target.write_text(json.dumps(tables(), separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
