"""The surface IR: what the text says, before anything is evaluated.

Second stop of the pipeline (text -> Lark tree -> *surface IR* -> expanded graph -> shapes).
`parse.py` builds these frozen nodes from the Lark tree; `expand.py` evaluates them. Class names
match the grammar rules they come from. Every node keeps the `Span` of its text.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdsl.source import Span

# ---- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Int:
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class Float:
    value: float
    span: Span


@dataclass(frozen=True, slots=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * / %
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Tuple:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class List:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Incoming:
    """`in.c`: a size of what flows into the definition being used (c, l, d, h, w)."""

    axis: str
    span: Span


Expr = Int | Float | String | Var | Incoming | BinOp | Neg | Tuple | List


@dataclass(frozen=True, slots=True)
class Size:
    """`3x224x224`, `(2*L)x224x224`: one expression per axis, channels first. `problem` says
    what is wrong with a size the grammar accepts but that does not read as one (`3x(c)(d)`)."""

    dims: tuple[Expr, ...]
    span: Span
    problem: str = ""


# ---- chains --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arg:
    name: str | None  # None for a positional argument
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    """A layer or a use of a definition: `conv3x3/2(64, bias=false)`."""

    name: str
    stride: Expr | None
    args: tuple[Arg, ...]
    span: Span
    name_span: Span
    label: str | None = None  # `conv1_1: conv3x3(64)`: the paper's name for the layer
    label_span: Span | None = None


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Chain, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Group:
    body: Chain
    span: Span


@dataclass(frozen=True, slots=True)
class Repeat:
    body: Chain
    count: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Comprehension:
    body: Chain
    targets: tuple[str, ...]
    values: List
    span: Span


@dataclass(frozen=True, slots=True)
class Bundle:
    """`[a, b -> conv1x1(64)]`: several tensors side by side, for the merge that follows."""

    arms: tuple[Chain, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Res:
    body: Chain
    shortcut: Chain | None
    span: Span


@dataclass(frozen=True, slots=True)
class Branch:
    arms: tuple[Chain, ...]
    sum: bool  # `{a | b}+` adds the arms instead of concatenating them
    span: Span


@dataclass(frozen=True, slots=True)
class Dense:
    body: Chain
    span: Span


@dataclass(frozen=True, slots=True)
class Scale:
    body: Chain
    span: Span


@dataclass(frozen=True, slots=True)
class Check:
    """`-> 64x56x56` in a chain: the shape that must flow there, as a paper's table states it
    (with or without the channels); checked by the compiler, passed through unchanged."""

    size: Size
    span: Span


Chain = Call | Seq | Group | Bundle | Repeat | Comprehension | Res | Branch | Dense | Scale | Check

# ---- statements ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class Default:
    op: str
    arg: str
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Input:
    size: Size
    span: Span
    name: str | None = None  # `input a: 1x105x105`; None for the one unnamed input
    name_span: Span | None = None


@dataclass(frozen=True, slots=True)
class Assign:
    """`y = a -> conv3x3(64)` names a tensor; `tower = [conv -> relu]` (a chain that does not
    start from a tensor) names a block, whose every use shares one set of weights."""

    name: str
    chain: Chain
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Output:
    """`output scores: y -> fc(10)`, or `output y` for a tensor already named."""

    name: str
    chain: Chain | None
    span: Span
    name_span: Span


Statement = Assign | Output


@dataclass(frozen=True, slots=True)
class Body:
    defaults: tuple[Default, ...]
    inputs: tuple[Input, ...]
    statements: tuple[Statement, ...]
    chain: Chain | None  # the last line when it is a bare chain: the net's one output
    span: Span
    stray: tuple[Chain, ...] = ()  # bare chains before the last line (an error to report)

    @property
    def input(self) -> Input:
        return self.inputs[0]


@dataclass(frozen=True, slots=True)
class Def:
    name: str
    params: tuple[Param, ...]
    body: Chain
    span: Span


@dataclass(frozen=True, slots=True)
class Net:
    name: str | None  # None for an anonymous net (a file that is just `input` and a chain)
    params: tuple[Param, ...]
    body: Body
    span: Span


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    span: Span


@dataclass(frozen=True, slots=True)
class Module:
    imports: tuple[Import, ...]
    defs: tuple[Def, ...]
    nets: tuple[Net, ...]
    span: Span
