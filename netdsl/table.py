"""Shaped net -> a summary table as an object: rows to read, and text, Markdown or HTML to show.

A consumer at the end of the pipeline, beside `summary.py`, whose arithmetic it reuses: the rows
are `summary.rows` and the totals `summary.to_json`'s, so a notebook, the command line and JSON
can never disagree. The same `Table` carries the summary of any ONNX file
(`netdsl.backends.runtime.inspect`). Jupyter shows a `ShapedNet` through `html`, which adds the
net's diagram as inline SVG where Graphviz is installed.
"""

from __future__ import annotations

import html as _html
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from netdsl.rules import dims
from netdsl.shapes import Node, ShapedNet
from netdsl.summary import CONVENTIONS, check_line, row_fields, rows, si, to_json

HEADINGS = {"name": "layer", "rf": "RF/stride", "macs": "MACs", "memory": "memory (bytes)"}
NUMERIC = {"params", "macs", "memory", "buffers", "flops", "activations", "nodes"}


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table: `rows` are dicts keyed by `columns`; `totals` and `notes` come under it."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]
    totals: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [dict(r) for r in self.rows],
            "totals": dict(self.totals),
            "notes": list(self.notes),
        }

    def cells(self) -> list[list[str]]:
        """Every row as display strings, numbers with thousands separators."""
        return [[_cell(c, r.get(c)) for c in self.columns] for r in self.rows]

    def to_markdown(self) -> str:
        def line(values: Sequence[str]) -> str:
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

        align = ["---:" if c in NUMERIC else ":---" for c in self.columns]
        out = [f"**{self.title}**", "", line([_heading(c) for c in self.columns]), line(align)]
        out += [line(cells) for cells in self.cells()]
        out.append("")
        out += [f"- {k}: {_cell(k, v)}" for k, v in self.totals.items()]
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out)

    def to_html(self) -> str:
        esc = _html.escape
        head = "".join(f"<th>{esc(_heading(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td style="text-align:{"right" if c in NUMERIC else "left"}">{esc(v)}</td>'
                for c, v in zip(self.columns, cells, strict=True)
            )
            + "</tr>"
            for cells in self.cells()
        )
        totals = "".join(
            f"<li>{esc(k)}: {esc(_cell(k, v))}</li>" for k, v in self.totals.items()
        ) + "".join(f"<li><small>{esc(n)}</small></li>" for n in self.notes)
        return (
            f'<div class="netdsl-table"><strong>{esc(self.title)}</strong>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<ul>{totals}</ul></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        cells = self.cells()
        heads = [_heading(c) for c in self.columns]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(heads)]

        def line(values: Sequence[str]) -> str:
            return "  ".join(
                v.rjust(w) if c in NUMERIC else v.ljust(w)
                for c, v, w in zip(self.columns, values, widths, strict=True)
            ).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        out = [self.title, rule, line(heads), rule, *(line(c) for c in cells), rule]
        out += [f"{k}: {_cell(k, v)}" for k, v in self.totals.items()]
        out += self.notes
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"<Table {self.title}: {len(self.rows)} rows>"


def _spread(
    row: dict[str, Any], fields: Mapping[str, str], inputs: Sequence[str]
) -> dict[str, Any]:
    """A row of a net with several inputs: its `rf` column becomes one per input (`rf a`, blank
    where the layer does not depend on that input), as in the text table."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "rf":
            out.update({f"rf {name}": fields.get(name, "") for name in inputs})
        else:
            out[key] = value
    return out


def _heading(column: str) -> str:
    if column.startswith("rf "):
        return f"RF/stride {column[3:]}"
    return HEADINGS.get(column, column)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and column in NUMERIC:
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return str(value)


def summary(net: ShapedNet, depth: int | None = None) -> Table:
    """The summary of `net` as a `Table`: one row per layer, or per block of `depth` name parts."""
    body = [asdict(r) for r in rows(net, depth)]
    if len(net.inputs) > 1:  # a column of fields per input
        spread = zip(body, row_fields(net, depth), strict=True)
        body = [_spread(row, fields, net.input_names) for row, fields in spread]
    columns = tuple(k for k in (body[0] if body else {}) if any(r[k] for r in body) or k != "note")
    total = to_json(net)["total"]
    totals = {k: total[k] for k in ("params", "buffers", "macs", "flops", "activations")}
    return Table(
        f"{net.name}: input {dims(net.input_shape)} -> {dims(net.output_shape)}",
        columns,
        tuple(body),
        totals,
        (f"conventions: {CONVENTIONS}",),
    )


def net_repr(net: ShapedNet) -> str:
    """One line: `<ShapedNet resnet50: 3x224x224 -> 1000, 25,557,032 params, 4.09 GMACs>`."""
    return f"<ShapedNet {check_line(net)}>"


def node_repr(node: Node) -> str:
    params = f", {node.params:,} params" if node.params else ""
    macs = f", {si(node.macs)}MACs" if node.macs else ""
    return f"<Node {node.name}: {node.op} -> {dims(node.shape)}{params}{macs}>"


def html(net: ShapedNet, depth: int | None = None) -> str:
    """What Jupyter shows for a net: its diagram as inline SVG (where Graphviz is installed)
    above its summary table."""
    from netdsl import draw
    from netdsl.diagram import to_dot

    picture = ""
    if draw.graphviz() is not None:
        diagram = draw.layout(net, depth)
        svg = draw.render(to_dot(diagram), "svg").decode("utf-8")
        # a small net's picture is open; a large one's would push the table off the screen
        state = " open" if len(diagram.boxes) <= 40 else ""
        picture = f"<details{state}><summary>diagram</summary>{svg[svg.find('<svg') :]}</details>"
    return picture + summary(net, depth).to_html()
