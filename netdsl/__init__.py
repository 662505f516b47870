"""netdsl: a declarative network-description compiler.

    >>> import netdsl
    >>> net = netdsl.parse("input 1x28x28\\nconv5x5(6) -> relu -> maxpool -> fc(10)")
    >>> net.output_shape, net.params
    ((10,), 11926)

Public API (guarded by tests/test_public_api.py): `parse`, `parse_all`, `load`, `load_all`,
`NetError`, `ShapedNet`, `Node`, `Diagnostic`, `Span`, and `summary` (a net's table as an object:
rows, to_dict, to_markdown, to_html).
"""

from netdsl.api import load, load_all, parse, parse_all
from netdsl.shapes import Node, ShapedNet
from netdsl.source import Diagnostic, NetError, Span
from netdsl.table import summary  # after netdsl.summary (the module) is loaded: the name is this

__version__ = "0.1.0"

__all__ = [
    "Diagnostic",
    "NetError",
    "Node",
    "ShapedNet",
    "Span",
    "__version__",
    "load",
    "load_all",
    "parse",
    "parse_all",
    "summary",
]
