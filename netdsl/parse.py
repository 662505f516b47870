"""Text -> Lark tree -> surface IR.

The front of the pipeline. The grammar ships as package data (`netdsl.grammars/net.lark`) with
its LALR tables built ahead (`net_tables.json`, data, see `grammars/build.py`): the parser
starts fast without lark's pickle cache in the shared temp folder. Work is bounded before lark
sees much: at most MAX_TOKENS tokens per load, brackets and operators nested at most MAX_NESTING
deep (the transformer and the evaluator recurse on them). Lark's exceptions are caught here,
once, and come out as `NetError` with file, line, column and a caret. The transformer only
builds nodes: every check that can fail lives in a later pass (anything raised inside a
transformer would come out wrapped in lark's `VisitError`).
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from netdsl import syntax as ast
from netdsl.source import NetError, Source, Span
from netdsl.syntax_errors import syntax_error, token_span

MAX_NESTING = 100  # brackets and operators deeper than this are refused before any recursion
MAX_TOKENS = 20_000  # tokens per load, all imported files together (the zoo's largest: 791)

_OPEN = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSE = set(_OPEN.values())
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "SUM"})
_GLUE = re.compile(r"(x\d*)+")  # what follows `)` in a size: `x56x56`, `x`
_RESETS = frozenset({"COMMA", "_NL", "_ARROW", "VBAR", "EQUAL", "COLON", "FOR", "IN"})


class _TooDeep(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


class _TooLong(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


class Tokens:
    """The token budget of one load, shared by the files it imports."""

    def __init__(self, limit: int = MAX_TOKENS) -> None:
        self.left = limit
        self.limit = limit


_BUDGET: contextvars.ContextVar[Tokens | None] = contextvars.ContextVar("tokens", default=None)


class _Newlines:
    """Postlexer: a newline ends a statement, unless the statement clearly goes on: inside
    brackets, after `->`, `=` or `,`, or before a line that starts with `->` or `for`."""

    always_accept = ("_NL",)
    _GOES_ON_AFTER = frozenset({"_ARROW", "EQUAL", "COMMA", "VBAR", "FOR", "IN"})
    _GOES_ON_BEFORE = frozenset({"_ARROW", "FOR", "IN"})

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        budget = _BUDGET.get() or Tokens()
        depth = 0
        # operators in a row at each bracket level: `1+1+...` nests the tree one level per `+`
        operators = [0]
        last = ""
        previous: Token | None = None
        pending: Token | None = None
        for token in stream:
            budget.left -= 1
            if budget.left < 0:
                raise _TooLong(token)
            if token.type in _OPERATORS:
                operators[-1] += 1
                if depth + sum(operators) > MAX_NESTING:
                    raise _TooDeep(token)
            elif token.type in _RESETS:
                operators[-1] = 0
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
                operators.append(0)
                if depth + sum(operators) > MAX_NESTING:
                    raise _TooDeep(token)
            elif token.type in _CLOSE:
                depth = max(0, depth - 1)
                if len(operators) > 1:
                    operators.pop()
            last, previous = token.type, token
            yield token
        if pending is not None:
            yield pending
        elif previous is not None:
            # every statement ends with a newline, the last one too: an empty one, which
            # syntax_errors calls the end of the file (and which, where the text stops short,
            # makes the parser reduce as far as it can before it reports what was expected)
            yield Token.new_borrow_pos("_NL", "", previous)


OPTIONS: dict[str, Any] = {
    "parser": "lalr",
    "lexer": "basic",  # the newline postlexer looks one token ahead; see _Newlines
    "propagate_positions": True,
    "maybe_placeholders": True,
}


def grammar_text() -> str:
    return resources.files("netdsl.grammars").joinpath("net.lark").read_text("utf-8")


def grammar_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _numbered(obj: dict[str, Any]) -> dict[Any, Any]:
    return {int(k) if k.isdigit() else k: v for k, v in obj.items()}


def shipped_tables() -> dict[str, Any]:
    """The tables `grammars/build.py` wrote (JSON keeps no integer keys: the parse table's
    state numbers become integers again here)."""
    text = resources.files("netdsl.grammars").joinpath("net_tables.json").read_text("utf-8")
    tables: dict[str, Any] = json.loads(text, object_hook=_numbered)
    return tables


@functools.cache
def _parser() -> Lark:
    from lark import __version__ as lark_version

    grammar = grammar_text()
    tables = shipped_tables()
    if tables["lark_version"] == lark_version and tables["grammar_sha256"] == grammar_hash(grammar):
        loaded: Lark = Lark._load_from_dict(  # type: ignore[no-untyped-call]
            tables["data"], tables["memo"], postlex=_Newlines(), propagate_positions=True
        )
        return loaded
    # tables made by another lark (or for an edited grammar): build them, slower but right
    return Lark(grammar, postlex=_Newlines(), **OPTIONS)


def _span(source: Source, meta: Any) -> Span:
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)


def parse_module(source: Source, tokens: Tokens | None = None) -> ast.Module:
    """Parse a whole `.net` text into the surface IR, or raise `NetError`; `tokens` is the
    budget of a load that reads several files (each parse takes its own by default)."""
    budget = tokens or Tokens()
    reset = _BUDGET.set(budget)
    try:
        tree = _parser().parse(source.text)
    except UnexpectedInput as error:
        raise syntax_error(source, error) from None
    except _TooDeep as error:
        what = "brackets nest" if error.token.type in _OPEN else "an expression nests operators"
        raise NetError(
            f"{what} more than {MAX_NESTING} deep", token_span(source, error.token)
        ) from None
    except _TooLong as error:
        raise NetError(
            f"more than {budget.limit:,} tokens to read (the limit of one load, imports included)",
            token_span(source, error.token),
        ) from None
    finally:
        _BUDGET.reset(reset)
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
        defaults = tuple(
            d
            for item in items
            if isinstance(item, tuple)
            for d in item
            if isinstance(d, ast.Default)
        )
        inputs = next(i for i in items if isinstance(i, tuple) and isinstance(i[0], ast.Input))
        at = items.index(inputs)
        lines = [i for i in items[at + 1 :] if not isinstance(i, tuple)]
        statements = tuple(i for i in lines if isinstance(i, ast.Assign | ast.Output))
        chains = [i for i in lines if not isinstance(i, ast.Assign | ast.Output)]
        last = lines[-1] if chains and lines[-1] is chains[-1] else None
        stray = tuple(c for c in chains if c is not last)
        return ast.Body(defaults, inputs, statements, last, self._s(meta), stray)

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

    def input_stmt(self, meta: Any, items: list[Any]) -> tuple[ast.Input, ...]:
        if isinstance(items[0], ast.Size):
            return (ast.Input(items[0], items[0].span),)
        return tuple(items)

    def named_input(self, meta: Any, items: list[Any]) -> ast.Input:
        name, size = items
        return ast.Input(size, size.span, str(name), token_span(self.source, name))

    def size(self, meta: Any, items: list[Any]) -> ast.Size:
        """Sizes lex in pieces: `64x56x56` is one token, `(c)x56x56` a parenthesised expression
        and the name `x56x56`. The pieces are split at each `x` and must alternate."""
        pieces: list[ast.Expr | None] = []  # None: an `x` between two sizes
        problem = ""
        for item in items:
            if not isinstance(item, Token):
                pieces.append(item)
                continue
            where = token_span(self.source, item)
            text = str(item)
            if item.type == "NAME" and not _GLUE.fullmatch(text):
                problem = problem or (
                    f"'{text}' in a size: write a parameter in parentheses, as in (c)x56x56"
                )
                continue
            for k, part in enumerate(text.split("x")):
                if k:
                    pieces.append(None)
                if part:
                    pieces.append(ast.Int(int(part), where))
        dims = tuple(p for p in pieces if p is not None)
        alternates = all((p is None) == (k % 2 == 1) for k, p in enumerate(pieces))
        if not problem and not (alternates and len(pieces) % 2 == 1):
            problem = "a size is numbers or (expressions) joined by x, as in (2*L)x224x224"
        return ast.Size(dims, self._s(meta), problem)

    def input_ref(self, meta: Any, items: list[Any]) -> ast.Call:
        """`input` in a chain: the net's one unnamed input, as a named tensor is used."""
        return ast.Call("input", None, (), self._s(meta), self._s(meta))

    def check(self, meta: Any, items: list[Any]) -> ast.Check:
        return ast.Check(items[0], self._s(meta))

    def incoming(self, meta: Any, items: list[Token]) -> ast.Incoming:
        return ast.Incoming(str(items[0]), self._s(meta))

    def assign(self, meta: Any, items: list[Any]) -> ast.Assign:
        name, chain = items
        return ast.Assign(str(name), chain, self._s(meta), token_span(self.source, name))

    def output_stmt(self, meta: Any, items: list[Any]) -> ast.Output:
        name, chain = items[0], (items[1] if len(items) > 1 else None)
        return ast.Output(str(name), chain, self._s(meta), token_span(self.source, name))

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
        label, name, stride, *args = items
        return ast.Call(
            str(name),
            stride,
            tuple(a for a in args if a is not None),
            self._s(meta),
            token_span(self.source, name),
            str(label) if label is not None else None,
            token_span(self.source, label) if label is not None else None,
        )

    def label(self, meta: Any, items: list[Token]) -> Token:
        return items[0]

    def arg(self, meta: Any, items: list[Any]) -> ast.Arg:
        name, value = items
        return ast.Arg(str(name) if name is not None else None, value, self._s(meta))

    def group(self, meta: Any, items: list[Any]) -> ast.Group:
        return ast.Group(items[0], self._s(meta))

    def bundle(self, meta: Any, items: list[Any]) -> ast.Bundle:
        return ast.Bundle(tuple(items), self._s(meta))

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
