"""Text -> Lark tree -> surface IR.

The front of the pipeline. The grammar ships as package data (`netdsl.grammars/net.lark`); the
parser is built once per process and cached. Lark's exceptions are caught here, once, and come
out as `NetError` with file, line, column and a caret. The transformer only builds nodes: every
check that can fail lives in a later pass (anything raised inside a transformer would come out
wrapped in lark's `VisitError`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from netdsl import syntax as ast
from netdsl.source import NetError, Source, Span

MAX_NESTING = 100  # brackets deeper than this are refused before they reach any recursion

_OPEN = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSE = set(_OPEN.values())


class _TooDeep(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


class _Newlines:
    """Postlexer: a newline ends a statement, unless the statement clearly goes on: inside
    brackets, after `->`, `=` or `,`, or before a line that starts with `->` or `for`."""

    always_accept = ("_NL",)
    _GOES_ON_AFTER = frozenset({"_ARROW", "EQUAL", "COMMA", "VBAR", "FOR", "IN"})
    _GOES_ON_BEFORE = frozenset({"_ARROW", "FOR", "IN"})

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        last = ""
        pending: Token | None = None
        for token in stream:
            if token.type == "_NL":
                if depth == 0 and pending is None and last not in self._GOES_ON_AFTER:
                    pending = token
                continue
            if pending is not None:
                if token.type not in self._GOES_ON_BEFORE:
                    yield pending
                pending = None
            if token.type in _OPEN:
                depth += 1
                if depth > MAX_NESTING:
                    raise _TooDeep(token)
            elif token.type in _CLOSE:
                depth = max(0, depth - 1)
            last = token.type
            yield token
        if pending is not None:
            yield pending


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("netdsl.grammars").joinpath("net.lark").read_text("utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="basic",  # the newline postlexer looks one token ahead; see _Newlines
        postlex=_Newlines(),
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,  # lark keeps the built tables in the temp folder: a faster start
    )


def _span(source: Source, meta: Any) -> Span:
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)


def _token_span(source: Source, token: Token) -> Span:
    line, column = token.line or 1, token.column or 1
    end_line = token.end_line or line
    end_column = token.end_column or column + max(1, len(token.value))
    return Span(source, line, column, end_line, end_column)


_TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "DIMS": "dimensions like 3x224x224",
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
    names = sorted({_TOKEN_NAMES.get(t, f"'{t.lower()}'" if t.isalpha() else t) for t in types})
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _syntax_error(source: Source, error: UnexpectedInput) -> NetError:
    line, column = max(1, error.line or 1), max(1, error.column or 1)
    if isinstance(error, UnexpectedToken):
        token = error.token
        if token.type == "$END":  # point just past the last text, where something is missing
            last = max((i for i, text in enumerate(source.lines) if text.strip()), default=0)
            end = len(source.line(last + 1).rstrip()) + 1
            span = Span(source, last + 1, end, last + 1, end + 1)
            found = "end of file"
        else:
            span = _token_span(source, token)
            found = "end of line" if token.type == "_NL" else repr(str(token.value))
        expected = set(error.expected)
        notes = [f"expected {_describe(expected)}"]
        closers = [c for c in ("RPAR", "RSQB", "RBRACE") if c in expected]
        if token.type == "NAME" and "_ARROW" in expected:
            notes.insert(0, "is a '->' missing before it?")
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


def parse_module(source: Source) -> ast.Module:
    """Parse a whole `.net` text into the surface IR, or raise `NetError`."""
    try:
        tree = _parser().parse(source.text)
    except UnexpectedInput as error:
        raise _syntax_error(source, error) from None
    except _TooDeep as error:
        raise NetError(
            f"brackets nest more than {MAX_NESTING} deep", _token_span(source, error.token)
        ) from None
    try:
        module: ast.Module = _ToIR(source).transform(tree)
    except VisitError as error:  # only a number Python cannot read gets here
        meta = getattr(error.obj, "meta", None)
        span = _span(source, meta) if meta is not None and not meta.empty else None
        raise NetError(f"a number too long to read ({error.orig_exc})", span) from None
    return module


@v_args(meta=True)
class _ToIR(Transformer[Token, Any]):
    """Builds surface IR nodes; one method per grammar rule, named as the rule."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source

    def _s(self, meta: Any) -> Span:
        return _span(self.source, meta)

    # ---- statements
    def start(self, meta: Any, items: list[Any]) -> ast.Module:
        span = self._s(meta) if not meta.empty else Span(self.source, 1, 1, 1, 1)
        return ast.Module(
            imports=tuple(i for i in items if isinstance(i, ast.Import)),
            defs=tuple(i for i in items if isinstance(i, ast.Def)),
            nets=tuple(i for i in items if isinstance(i, ast.Net)),
            span=span,
        )

    def import_stmt(self, meta: Any, items: list[Token]) -> ast.Import:
        return ast.Import(items[0][1:-1], self._s(meta))

    def def_stmt(self, meta: Any, items: list[Any]) -> ast.Def:
        name, params, body = items
        return ast.Def(str(name), params or (), body, self._s(meta))

    def net_stmt(self, meta: Any, items: list[Any]) -> ast.Net:
        name, params, body = items
        return ast.Net(str(name), params or (), body, self._s(meta))

    def anon_net(self, meta: Any, items: list[Any]) -> ast.Net:
        return ast.Net(None, (), items[0], self._s(meta))

    def body(self, meta: Any, items: list[Any]) -> ast.Body:
        defaults = tuple(d for item in items[:-1] if isinstance(item, tuple) for d in item)
        inputs = [i for i in items if isinstance(i, ast.Input)]
        return ast.Body(defaults, inputs[0], items[-1], self._s(meta))

    def params(self, meta: Any, items: list[Any]) -> tuple[ast.Param, ...]:
        return tuple(p for p in items if p is not None)

    def param(self, meta: Any, items: list[Any]) -> ast.Param:
        return ast.Param(str(items[0]), items[1], self._s(meta))

    def param_default(self, meta: Any, items: list[Any]) -> Any:
        return items[0]

    def stride(self, meta: Any, items: list[Any]) -> Any:
        return items[0]

    def shortcut(self, meta: Any, items: list[Any]) -> Any:
        return items[0]

    def defaults_stmt(self, meta: Any, items: list[ast.Default]) -> tuple[ast.Default, ...]:
        return tuple(items)

    def default(self, meta: Any, items: list[Any]) -> ast.Default:
        return ast.Default(str(items[0]), str(items[1]), items[2], self._s(meta))

    def input_stmt(self, meta: Any, items: list[Token]) -> ast.Input:
        dims = tuple(int(d) for d in str(items[0]).split("x"))
        return ast.Input(dims, _token_span(self.source, items[0]))

    # ---- chains
    def seq(self, meta: Any, items: list[Any]) -> ast.Seq:
        flat: list[ast.Chain] = []
        for item in items:
            flat.extend(item.items if isinstance(item, ast.Seq) else (item,))
        return ast.Seq(tuple(flat), self._s(meta))

    def repeat(self, meta: Any, items: list[Any]) -> ast.Repeat:
        return ast.Repeat(items[0], items[1], self._s(meta))

    def comprehension(self, meta: Any, items: list[Any]) -> ast.Comprehension:
        body, targets, values = items
        return ast.Comprehension(body, targets, values, self._s(meta))

    def targets(self, meta: Any, items: list[Token]) -> tuple[str, ...]:
        return tuple(str(t) for t in items)

    def call(self, meta: Any, items: list[Any]) -> ast.Call:
        name, stride, *args = items
        return ast.Call(
            str(name),
            stride,
            tuple(a for a in args if a is not None),
            self._s(meta),
            _token_span(self.source, name),
        )

    def arg(self, meta: Any, items: list[Any]) -> ast.Arg:
        name, value = items
        return ast.Arg(str(name) if name is not None else None, value, self._s(meta))

    def group(self, meta: Any, items: list[Any]) -> ast.Group:
        return ast.Group(items[0], self._s(meta))

    def res(self, meta: Any, items: list[Any]) -> ast.Res:
        return ast.Res(items[0], items[1], self._s(meta))

    def branch(self, meta: Any, items: list[Any]) -> ast.Branch:
        summed = items[-1] is not None
        return ast.Branch(tuple(items[:-1]), summed, self._s(meta))

    def dense(self, meta: Any, items: list[Any]) -> ast.Dense:
        return ast.Dense(items[0], self._s(meta))

    def scale(self, meta: Any, items: list[Any]) -> ast.Scale:
        return ast.Scale(items[0], self._s(meta))

    # ---- expressions
    def _binop(self, op: str, meta: Any, items: list[Any]) -> ast.BinOp:
        return ast.BinOp(op, items[0], items[1], self._s(meta))

    def add(self, meta: Any, items: list[Any]) -> ast.BinOp:
        return self._binop("+", meta, items)

    def sub(self, meta: Any, items: list[Any]) -> ast.BinOp:
        return self._binop("-", meta, items)

    def mul(self, meta: Any, items: list[Any]) -> ast.BinOp:
        return self._binop("*", meta, items)

    def div(self, meta: Any, items: list[Any]) -> ast.BinOp:
        return self._binop("/", meta, items)

    def mod(self, meta: Any, items: list[Any]) -> ast.BinOp:
        return self._binop("%", meta, items)

    def neg(self, meta: Any, items: list[Any]) -> ast.Neg:
        return ast.Neg(items[0], self._s(meta))

    def int(self, meta: Any, items: list[Token]) -> ast.Int:
        return ast.Int(int(items[0]), self._s(meta))

    def float(self, meta: Any, items: list[Token]) -> ast.Float:
        return ast.Float(float(items[0]), self._s(meta))

    def var(self, meta: Any, items: list[Token]) -> ast.Var:
        return ast.Var(str(items[0]), self._s(meta))

    def string(self, meta: Any, items: list[Token]) -> ast.String:
        return ast.String(str(items[0])[1:-1], self._s(meta))

    def tuple_(self, meta: Any, items: list[Any]) -> ast.Tuple:
        return ast.Tuple(tuple(i for i in items if i is not None), self._s(meta))

    def list_(self, meta: Any, items: list[Any]) -> ast.List:
        return ast.List(tuple(i for i in items if i is not None), self._s(meta))


__all__ = ["parse_module"]
