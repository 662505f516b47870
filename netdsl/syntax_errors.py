"""Lark's syntax errors -> `NetError` with a caret and a hint.

Part of the front of the pipeline: `parse.py` catches lark's exceptions once and hands them
here. The message names what was found and what the grammar expected, in words (`a name`,
`')'`), and a hint for the usual mistakes: a missing `)` or `]`, a missing `->` between layers,
a missing `,` between arguments, a chain continued on a new line without `->`.
"""

from __future__ import annotations

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from netdsl.source import NetError, Source, Span


def token_span(source: Source, token: Token) -> Span:
    line, column = token.line or 1, token.column or 1
    end_line = token.end_line or line
    end_column = token.end_column or column + max(1, len(token.value))
    return Span(source, line, column, end_line, end_column)


_TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "DIMS": "dimensions like 3x224x224",
    "CHECK": "a shape like 64x56x56",
    "STRING": 'a quoted path like "blocks.net"',
    "_NL": "end of line",
    "$END": "end of file",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "EQUAL": "'='",
    "COLON": "':'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "VBAR": "'|'",
    "DOT": "'.'",
    "SUM": "'+'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "PERCENT": "'%'",
    "_ARROW": "'->'",
}


def _describe(types: set[str]) -> str:
    if {"DIMS", "LSQB"} <= types:  # where a chain goes on: a size there is a shape check
        types = (types - {"DIMS", "INT", "LPAR"}) | {"CHECK"}
    names = sorted({_TOKEN_NAMES.get(t, f"'{t.lower()}'" if t.isalpha() else t) for t in types})
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def syntax_error(source: Source, error: UnexpectedInput) -> NetError:
    line, column = max(1, error.line or 1), max(1, error.column or 1)
    if isinstance(error, UnexpectedToken):
        token = error.token
        if token.type == "$END" or (
            token.type == "_NL" and not token.value
        ):  # point just past the last text, where something is missing
            last = max((i for i, text in enumerate(source.lines) if text.strip()), default=0)
            end = len(source.line(last + 1).rstrip()) + 1
            span = Span(source, last + 1, end, last + 1, end + 1)
            found = "end of file"
        else:
            span = token_span(source, token)
            found = "end of line" if token.type == "_NL" else repr(str(token.value))
        expected = set(error.expected)
        notes = [f"expected {_describe(expected)}"]
        closers = [c for c in ("RPAR", "RSQB", "RBRACE") if c in expected]
        starts_line = not source.line(line)[: column - 1].strip()
        before = next((t.split()[0] for t in reversed(source.lines[: line - 1]) if t.strip()), "")
        after_chain = before not in ("", "import", "input", "defaults", "net")
        if token.type == "NAME" and "COMMA" in expected and _inside(source, token) == "(":
            notes.insert(0, "is a ',' missing before it?")
        elif token.type == "NAME" and "_ARROW" in expected:
            notes.insert(0, "is a '->' missing before it?")
        elif token.type == "NAME" and "NAME" not in expected and starts_line and after_chain:
            notes.insert(
                0,
                "a chain that goes on to a new line starts that line with '->' (or ends the "
                "line before with it)",
            )
        elif closers and token.type in ("_ARROW", "_NL", "$END"):
            notes.insert(0, f"is a {_TOKEN_NAMES[closers[0]]} missing before it?")
        return NetError(f"unexpected {found}", span, notes)
    if isinstance(error, UnexpectedCharacters):
        pos = error.pos_in_stream or 0
        char = source.text[pos] if pos < len(source.text) else ""
        return NetError(
            f"unexpected character {char!r}", Span(source, line, column, line, column + 1)
        )
    if isinstance(error, UnexpectedEOF):
        return NetError("unexpected end of file", None)
    return NetError(str(error).splitlines()[0], Span(source, line, column, line, column + 1))


def _inside(source: Source, token: Token) -> str:
    """The innermost bracket open at a token ('' at the top level); strings and comments
    are skipped, as the lexer skips them."""
    stack: list[str] = []
    text = source.text[: token.start_pos or 0]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            stack.append(ch)
        elif ch in ")]}" and stack:
            stack.pop()
        elif ch in '#"':
            stop = text.find("\n" if ch == "#" else '"', i + 1)
            i = len(text) if stop < 0 else stop
        i += 1
    return stack[-1] if stack else ""
