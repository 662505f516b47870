"""Summary tables as objects (`netdsl.summary`), what a notebook shows (`_repr_html_`) and the
one-line `repr` of nets and layers. The rows are `summary.rows`' and the totals the published
counts, so the object, the command line's table and JSON agree."""

from __future__ import annotations

import json
from dataclasses import asdict
from html.parser import HTMLParser

import pytest

import netdsl
from netdsl import draw
from netdsl.summary import rows, to_json
from netdsl.table import Table

NETS = ["lenet5", "resnet18", "googlenet", "densenet121", "se_resnet50", "alexnet"]


class Cells(HTMLParser):
    """The rows of the first <table> of a page, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_data(self, data: str) -> None:
        if self.rows and {"td", "th"} & set(self.tags[-1:]):
            self.rows[-1][-1] += data


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("depth", [None, 1, 2])
def test_rows_are_the_summary_rows(name: str, depth: int | None) -> None:
    net = netdsl.load(name)
    table = netdsl.summary(net, depth)
    assert isinstance(table, Table)
    assert list(table.rows) == [asdict(r) for r in rows(net, depth)]
    assert table.totals["params"] == net.params
    assert table.totals["macs"] == net.macs
    assert {k: table.totals[k] for k in table.totals} == {
        k: to_json(net)["total"][k] for k in table.totals
    }
    assert json.loads(json.dumps(table.to_dict())) == table.to_dict()


# published figures: LeCun et al. 1998 (LeNet-5), torchvision (ResNet-50, GoogLeNet)
@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("lenet5", "<ShapedNet lenet5: 1x32x32 -> 10, 61,706 params, 416.52 KMACs>"),
        ("resnet50", "<ShapedNet resnet50: 3x224x224 -> 1000, 25,557,032 params, 4.09 GMACs>"),
        ("googlenet", "<ShapedNet googlenet: 3x224x224 -> 1000, 6,624,904 params, 1.50 GMACs>"),
    ],
)
def test_repr_is_one_line(name: str, line: str) -> None:
    net = netdsl.load(name)
    assert repr(net) == line
    assert all("\n" not in repr(n) and len(repr(n)) < 160 for n in net.nodes)


def test_node_repr_names_the_layer() -> None:
    node = netdsl.load("resnet50").nodes[1]
    assert repr(node) == "<Node stem1.conv1: conv -> 64x112x112, 9,408 params, 118.01 MMACs>"
    assert repr(netdsl.load("lenet5").nodes[0]) == "<Node input: input -> 1x32x32>"


@pytest.mark.parametrize(("name", "depth"), [("lenet5", None), ("resnet18", 2)])
def test_markdown_is_a_table_of_rows(name: str, depth: int | None) -> None:
    table = netdsl.summary(netdsl.load(name), depth)
    lines = table.to_markdown().splitlines()
    body = [line for line in lines if line.startswith("|")]
    assert len(body) == 2 + len(table.rows)
    widths = {len(line.replace("\\|", "").split("|")) for line in body}
    assert widths == {len(table.columns) + 2}
    assert body[1].startswith("| :---")
    assert f"- params: {table.totals['params']:,}" in lines


@pytest.mark.parametrize("graphviz", [True, False])
def test_notebook_shows_the_table_and_the_diagram_where_graphviz_is(
    monkeypatch: pytest.MonkeyPatch, graphviz: bool
) -> None:
    if graphviz and draw.graphviz() is None:
        pytest.skip("Graphviz's `dot` is not installed (apt-get install graphviz)")
    if not graphviz:
        monkeypatch.setattr(draw, "graphviz", lambda: None)
    net = netdsl.load("lenet5")
    page = net._repr_html_()
    assert ("<svg" in page) is graphviz
    cells = Cells()
    cells.feed(page[page.index("<table>") :])
    table = netdsl.summary(net)
    assert len(cells.rows) == 1 + len(table.rows)
    assert cells.rows[0][:2] == ["layer", "op"]
    row = dict(zip(cells.rows[0], cells.rows[2], strict=True))  # the columns by their headings
    assert (row["layer"], row["op"], row["output"], row["params"]) == (
        "conv1",
        "conv",
        "6x28x28",
        "156",
    )
    assert (row["kernel"], row["stride"]) == ("5x5", "1x1")


def test_html_escapes_what_it_shows() -> None:
    table = Table("a <b> & c", ("name",), ({"name": "<script>"},), {"x": "<y>"})
    page = table._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt; &amp; c" in page and "x: &lt;y&gt;" in page


def test_plain_text_aligns_numbers_right() -> None:
    text = str(netdsl.summary(netdsl.load("lenet5")))
    lines = text.splitlines()
    assert lines[0] == "lenet5: input 1x32x32 -> 10"
    fc = next(line for line in lines if line.startswith("fc1 "))
    head = next(line for line in lines if line.startswith("layer "))
    assert fc.index("10,164") + len("10,164") == head.index("params") + len("params")
