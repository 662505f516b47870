"""Golden error messages: the whole text a user sees for typical mistakes.

A message is part of the product, so each golden case holds the complete `NetError.render()`,
line by line as it prints; a change to a message shows up here as a diff to review. Messages
once found unclear or wrong sit in `CLEARER` below, each held to what its fix must (and must
not) say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl


def lines(*parts: str) -> str:
    return "\n".join(parts)


def rendered(text: str) -> str:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    return caught.value.render()


GOLDEN = [
    # ---- syntax: the first mistake, with a hint where one is likely
    (
        "missing paren",
        "input 3x32x32\nconv3x3(64 -> relu\n",
        lines(
            "bad.net:2:12: error: unexpected '->'",
            "  conv3x3(64 -> relu",
            "             ^^",
            "  note: is a ')' missing before it?",
            "  note: expected '%', ')', '*', '+', ',', '-', '/', ']', ...",
        ),
    ),
    (
        "missing paren at the end",
        "input 3x32x32\n[conv3x3(64) -> relu]*2 -> fc(10\n",
        lines(
            "bad.net:2:33: error: unexpected end of file",
            "  [conv3x3(64) -> relu]*2 -> fc(10",
            "                                  ^",
            "  note: is a ')' missing before it?",
            "  note: expected ')', ','",
        ),
    ),
    (
        "missing bracket",
        "input 3x8x8\n{conv1x1(4) | relu\n",
        lines(
            "bad.net:2:19: error: unexpected end of file",
            "  {conv1x1(4) | relu",
            "                    ^",
            "  note: is a '}' missing before it?",
            "  note: expected '|', '}'",
        ),
    ),
    (
        "missing arrow",
        "input 3x32x32\nconv3x3(64) relu\n",
        lines(
            "bad.net:2:13: error: unexpected 'relu'",
            "  conv3x3(64) relu",
            "              ^^^^",
            "  note: is a '->' missing before it?",
            "  note: expected '*', ',', '->', ']', 'for', '|', '}', end of line",
        ),
    ),
    (
        "doubled arrow",
        "input 3x32x32\nconv3x3(64) -> -> relu\n",
        lines(
            "bad.net:2:16: error: unexpected '->'",
            "  conv3x3(64) -> -> relu",
            "                 ^^",
            "  note: expected '[', 'dense', 'input', 'res', 'scale', '{', a name, a shape like "
            "64x56x56",
        ),
    ),
    (
        "bad character",
        "input 3x32x32\nconv3x3(64) -> relu; maxpool\n",
        lines(
            "bad.net:2:20: error: unexpected character ';'",
            "  conv3x3(64) -> relu; maxpool",
            "                     ^",
        ),
    ),
    (
        "no net",
        "def block(c) = conv3x3(c)\n",
        lines(
            "bad.net:1:1: error: 'bad.net' defines no net",
            "  def block(c) = conv3x3(c)",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^",
            "  note: a net is `net NAME:` or an `input` line followed by a chain",
        ),
    ),
    # ---- names
    (
        "unknown layer",
        "input 3x32x32\nconv3x3(64) -> rleu\n",
        lines(
            "bad.net:2:16: error: unknown layer 'rleu'",
            "  conv3x3(64) -> rleu",
            "                 ^^^^",
            "  note: did you mean 'relu'?",
        ),
    ),
    (
        "unknown definition",
        "def block(c) = conv3x3(c) -> relu\ninput 3x32x32\nblcok(64)\n",
        lines(
            "bad.net:3:1: error: unknown layer 'blcok'",
            "  blcok(64)",
            "  ^^^^^",
            "  note: did you mean 'block'?",
        ),
    ),
    (
        "unknown name",
        "net small(width=16):\n    input 3x32x32\n    conv3x3(widht)\n",
        lines(
            "bad.net:3:13: error: unknown name 'widht'",
            "      conv3x3(widht)",
            "              ^^^^^",
            "  note: did you mean 'width'?",
        ),
    ),
    (
        "three typos, three errors",
        "input 3x32x32\nconv3x3(64) -> rleu -> maxpol -> fc(clases)\n",
        lines(
            "bad.net:2:16: error: unknown layer 'rleu'",
            "  conv3x3(64) -> rleu -> maxpol -> fc(clases)",
            "                 ^^^^",
            "  note: did you mean 'relu'?",
            "bad.net:2:24: error: unknown layer 'maxpol'",
            "  conv3x3(64) -> rleu -> maxpol -> fc(clases)",
            "                         ^^^^^^",
            "  note: did you mean 'maxpool' or 'gmaxpool' or 'avgpool'?",
            "bad.net:2:37: error: unknown name 'clases'",
            "  conv3x3(64) -> rleu -> maxpol -> fc(clases)",
            "                                      ^^^^^^",
        ),
    ),
    (
        "locally connected",
        "input 3x2x2\nlocal3x3(16)\n",
        lines(
            "bad.net:2:1: error: local3x3 needs an input of at least 3x3, got 2x2",
            "  local3x3(16)",
            "  ^^^^^^^^^^^^",
            "  note: height and width: floor((2 + 0 - 3)/1) + 1 = 0",
        ),
    ),
    # ---- arguments
    (
        "bad value",
        "input 3x32x32\nconv3x3(64, p=-1)\n",
        lines(
            "bad.net:2:13: error: conv p: expected an integer >= 0, got -1",
            "  conv3x3(64, p=-1)",
            "              ^^^^",
        ),
    ),
    (
        "bad probability",
        "input 3x32x32\nconv3x3(64) -> dropout(1.5)\n",
        lines(
            "bad.net:2:24: error: dropout p: expected a probability in [0, 1), got 1.5",
            "  conv3x3(64) -> dropout(1.5)",
            "                         ^^^",
        ),
    ),
    (
        "bad type",
        "input 3x32x32\nconv3x3(64, bias=1)\n",
        lines(
            "bad.net:2:13: error: conv bias: expected true or false, got 1",
            "  conv3x3(64, bias=1)",
            "              ^^^^^^",
        ),
    ),
    (
        "bad padding tuple",
        "input 3x32x32\nconv3x3(64, p=(1, 2, 3, 4, 5))\n",
        lines(
            "bad.net:2:13: error: conv p: padding takes 1, 2 (height, width), 3 (depth, height, "
            "width), 4 (top, left, bottom, right) or 6 integers, got 5",
            "  conv3x3(64, p=(1, 2, 3, 4, 5))",
            "              ^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "given twice by the name",
        "input 3x32x32\nconv3x3(64, k=5)\n",
        lines(
            "bad.net:2:13: error: 'k' given twice (the name already says it)",
            "  conv3x3(64, k=5)",
            "              ^^^",
        ),
    ),
    (
        "given twice to a definition",
        "def block(c, s=1) = conv3x3/s(c)\ninput 3x32x32\nblock(64, c=32)\n",
        lines(
            "bad.net:3:11: error: parameter 'c' given twice",
            "  block(64, c=32)",
            "            ^^^^",
        ),
    ),
    (
        "unknown keyword",
        "input 3x32x32\nconv3x3(64, stride=2)\n",
        lines(
            "bad.net:2:13: error: 'conv3x3' has no parameter 'stride'",
            "  conv3x3(64, stride=2)",
            "              ^^^^^^^^",
            "  note: conv takes c, k, s, p, d, groups, bias",
        ),
    ),
    (
        "too many arguments",
        "def block(c, s=1) = conv3x3/s(c)\ninput 3x32x32\nblock(64, 2, 3)\n",
        lines(
            "bad.net:3:14: error: 'block' takes 2 arguments, got 3",
            "  block(64, 2, 3)",
            "               ^",
        ),
    ),
    (
        "missing argument",
        "def blk(c, s) = conv3x3/s(c)\ninput 3x8x8\nblk(4)\n",
        lines(
            "bad.net:3:1: error: 'blk' needs a value for 's'",
            "  blk(4)",
            "  ^^^^^^",
            "  note: 'blk' is defined at bad.net:1:1",
        ),
    ),
    (
        "net parameter without a value",
        "net n(classes):\n  input 3x8x8\n  fc(classes)\n",
        lines(
            "bad.net:1:7: error: net parameter 'classes' has no default and was not given",
            "  net n(classes):",
            "        ^^^^^^^",
        ),
    ),
    (
        "division by zero",
        "net n(g=0):\n  input 3x8x8\n  conv1x1(64/g)\n",
        lines(
            "bad.net:3:11: error: division by zero in 64 / 0",
            "    conv1x1(64/g)",
            "            ^^^^",
        ),
    ),
    (
        "negative repetition",
        "input 3x8x8\nrelu*(0-1)\n",
        lines(
            "bad.net:2:7: error: a repetition count must be a whole number >= 0, got -1",
            "  relu*(0-1)",
            "        ^^^",
        ),
    ),
    (
        "input dimensions",
        "input 3x32x32x32x32\nrelu\n",
        lines(
            "bad.net:1:7: error: input takes C, CxL, CxHxW or CxDxHxW, got 5 dimensions",
            "  input 3x32x32x32x32",
            "        ^^^^^^^^^^^^^",
        ),
    ),
    # ---- shapes: the formula with its numbers, and where in the unrolling
    (
        "shape error in a repetition",
        "input 3x32x32\n[[conv3x3(64) -> relu]*2 -> pool]*6 -> fc(10)\n",
        lines(
            "bad.net:2:29: error: pool needs an input of at least 2x2, got 1x1",
            "  [[conv3x3(64) -> relu]*2 -> pool]*6 -> fc(10)",
            "                              ^^^^",
            "  note: height and width: floor((1 + 0 - 2)/2) + 1 = 0",
            "  note: in repetition 6 of 6; input sizes 32x32 → 16x16 → 8x8 → 4x4 → 2x2 → 1x1",
        ),
    ),
    (
        "shape error in a definition used in a comprehension",
        "def block(c) = conv3x3(c) -> maxpool\nnet small:\n    input 3x8x8\n"
        "    block(c) for c in [16, 32, 64, 128]\n",
        lines(
            "bad.net:1:30: error: maxpool needs an input of at least 2x2, got 1x1",
            "  def block(c) = conv3x3(c) -> maxpool",
            "                               ^^^^^^^",
            "  note: height and width: floor((1 + 0 - 2)/2) + 1 = 0",
            "  note: in item 4 of 4 (c=128); input sizes 8x8 → 4x4 → 2x2 → 1x1",
            "  note: in block(128), used at bad.net:4:5",
        ),
    ),
    (
        "kernel larger than the input",
        "input 3x8x9\nconv5x5(4, p=valid) -> conv5x5(4, p=valid)\n",
        lines(
            "bad.net:2:24: error: conv5x5 needs an input of at least 5x5, got 4x5",
            "  conv5x5(4, p=valid) -> conv5x5(4, p=valid)",
            "                         ^^^^^^^^^^^^^^^^^^^",
            "  note: height: floor((4 + 0 - 5)/1) + 1 = 0",
        ),
    ),
    (
        "residual add mismatch",
        "input 64x56x56\nres[conv3x3(64, p=valid) -> bn -> relu -> conv3x3(128)]\n",
        lines(
            "bad.net:2:1: error: residual add: the body gives 128x54x54 but its input is 64x56x56",
            "  res[conv3x3(64, p=valid) -> bn -> relu -> conv3x3(128)]",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
            "  note: a projection shortcut (1x1 conv, stride s) maps a size N to ceil(N/s): no stride "
            "turns 56x56 into 54x54",
            "  note: write the shortcut yourself: res[body, shortcut=...]",
        ),
    ),
    (
        "concat mismatch",
        "input 192x28x28\n{conv1x1(64) | conv3x3(128) | maxpool3x3/2}\n",
        lines(
            "bad.net:2:1: error: cannot concatenate 64x28x28, 128x28x28, 192x13x13: all but the "
            "channels must agree",
            "  {conv1x1(64) | conv3x3(128) | maxpool3x3/2}",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "sum mismatch",
        "input 16x8x8\n{conv3x3(16) | conv3x3(32)}+\n",
        lines(
            "bad.net:2:1: error: cannot add 16x8x8 and 32x8x8: shapes must be equal",
            "  {conv3x3(16) | conv3x3(32)}+",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "conv on a vector",
        "input 16x8x8\nflatten -> fc(100) -> conv3x3(8)\n",
        lines(
            "bad.net:2:23: error: conv3x3 needs a CxHxW input, got a vector of 100",
            "  flatten -> fc(100) -> conv3x3(8)",
            "                        ^^^^^^^^^^",
            "  note: a flatten or fc earlier in the chain turned the image into a vector",
        ),
    ),
    (
        "groups",
        "input 16x8x8\nconv3x3(6, groups=4)\n",
        lines(
            "bad.net:2:1: error: conv3x3: groups=4 must divide both the input channels (16) and the "
            "output channels (6)",
            "  conv3x3(6, groups=4)",
            "  ^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "scale gate",
        "input 64x8x8\nscale[gap -> fc(4) -> relu -> fc(32) -> sigmoid]\n",
        lines(
            "bad.net:2:1: error: scale: the gate gives 32, but the input has 64 channels; the gate "
            "must give 64 (or 64x1x1)",
            "  scale[gap -> fc(4) -> relu -> fc(32) -> sigmoid]",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "output padding",
        "input 16x8x8\ndeconv(8, k=3, s=2, output_padding=2)\n",
        lines(
            "bad.net:2:1: error: deconv: output_padding 2 must be smaller than the stride 2 or the "
            "dilation 1",
            "  deconv(8, k=3, s=2, output_padding=2)",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "independent shape errors",
        "input 8x8x8\n{conv3x3(4, groups=3) | maxpool -> maxpool -> maxpool -> maxpool}\n",
        lines(
            "bad.net:2:2: error: conv3x3: groups=3 must divide both the input channels (8) and the "
            "output channels (4)",
            "  {conv3x3(4, groups=3) | maxpool -> maxpool -> maxpool -> maxpool}",
            "   ^^^^^^^^^^^^^^^^^^^^",
            "bad.net:2:58: error: maxpool needs an input of at least 2x2, got 1x1",
            "  {conv3x3(4, groups=3) | maxpool -> maxpool -> maxpool -> maxpool}",
            "                                                           ^^^^^^^",
            "  note: height and width: floor((1 + 0 - 2)/2) + 1 = 0",
        ),
    ),
    # ---- limits
    (
        "recursion",
        "def a(x) = b(x)\ndef b(x) = a(x)\ninput 3x8x8\na(1)\n",
        lines(
            "bad.net:2:12: error: 'a' uses itself; definitions cannot recurse",
            "  def b(x) = a(x)",
            "             ^",
            "  note: in b(1), used at bad.net:1:12",
            "  note: in a(1), used at bad.net:4:1",
        ),
    ),
    (
        "absurd repetition",
        "input 3x8x8\n[conv3x3(64)]*1000000000\n",
        lines(
            "bad.net:2:15: error: repetition count 1,000,000,000 exceeds the limit of 20,000 layers "
            "per net",
            "  [conv3x3(64)]*1000000000",
            "                ^^^^^^^^^^",
        ),
    ),
    (
        "huge weight",
        "input 3x8x8\nfc(100000) -> fc(100000)\n",
        lines(
            "bad.net:2:15: error: fc: its weight tensor would have 10,000,000,000 elements "
            "(100000x100000), more than the limit of 2^31 - 1",
            "  fc(100000) -> fc(100000)",
            "                ^^^^^^^^^^",
        ),
    ),
    # ---- more of the same kinds, once in test_messages.py
    (
        "unknown name, nothing near it",
        "input 3x32x32\nconv3x3(width)\n",
        lines(
            "bad.net:2:9: error: unknown name 'width'",
            "  conv3x3(width)",
            "          ^^^^^",
        ),
    ),
    (
        "bad probability, alone",
        "input 3x32x32\ndropout(1.5)\n",
        lines(
            "bad.net:2:9: error: dropout p: expected a probability in [0, 1), got 1.5",
            "  dropout(1.5)",
            "          ^^^",
        ),
    ),
    (
        "residual mismatch, channels and size",
        "input 16x8x8\nres[conv3x3(16, p=valid) -> conv1x1(32)]\n",
        lines(
            "bad.net:2:1: error: residual add: the body gives 32x6x6 but its input is 16x8x8",
            "  res[conv3x3(16, p=valid) -> conv1x1(32)]",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
            "  note: a projection shortcut (1x1 conv, stride s) maps a size N to ceil(N/s): no stride turns 8x8 into 6x6",
            "  note: write the shortcut yourself: res[body, shortcut=...]",
        ),
    ),
    (
        "concat mismatch (2)",
        "input 16x8x8\n{conv3x3(8) | conv3x3/2(8)}\n",
        lines(
            "bad.net:2:1: error: cannot concatenate 8x8x8, 8x4x4: all but the channels must agree",
            "  {conv3x3(8) | conv3x3/2(8)}",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "conv on a vector (2)",
        "input 16x8x8\nflatten -> conv3x3(8)\n",
        lines(
            "bad.net:2:12: error: conv3x3 needs a CxHxW input, got a vector of 1024",
            "  flatten -> conv3x3(8)",
            "             ^^^^^^^^^^",
            "  note: a flatten or fc earlier in the chain turned the image into a vector",
        ),
    ),
    (
        "three mistakes, names and layers",
        "input 3x8x8\nrelux -> conv3x3(foo) -> fc(bar)\n",
        lines(
            "bad.net:2:1: error: unknown layer 'relux'",
            "  relux -> conv3x3(foo) -> fc(bar)",
            "  ^^^^^",
            "  note: did you mean 'relu'?",
            "bad.net:2:18: error: unknown name 'foo'",
            "  relux -> conv3x3(foo) -> fc(bar)",
            "                   ^^^",
            "bad.net:2:29: error: unknown name 'bar'",
            "  relux -> conv3x3(foo) -> fc(bar)",
            "                              ^^^",
        ),
    ),
]


@pytest.mark.parametrize(("text", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_error_message(text: str, expected: str) -> None:
    assert rendered(text) == expected


def test_shape_errors_of_every_net_in_a_file_are_reported() -> None:
    text = (
        "net first:\n  input 3x8x8\n  conv3x3(4, groups=2)\n"
        "net second:\n  input 3x8x8\n  flatten -> maxpool\n"
    )
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse_all(text, "bad.net")
    assert [(d.span.line, d.span.column) for d in caught.value.diagnostics if d.span] == [
        (3, 3),
        (6, 14),
    ]


# ---- messages once found unclear, now held to what the fix achieved --------------------------

# (what, text, must contain, must not contain, what was wrong); an entry whose fix is still due
# carries its reason as a sixth item and runs as a strict xfail.
CLEARER: list[tuple[str, ...]] = [
    (
        "comma missing in arguments",
        "input 3x8x8\nconv(64 k=3)\n",
        "is a ',' missing before it?",
        "is a '->' missing",
        "inside an argument list the hint said \"is a '->' missing before it?\"",
    ),
    (
        "chain continued without ->",
        "input 3x8x8\nconv3x3(4) -> relu\nmaxpool\n",
        "starts that line with '->'",
        "",
        "a new line that goes on with the chain but lacks a leading '->' got no hint",
    ),
    (
        "conv on a vector input",
        "input 784\nconv3x3(4)\n",
        "note: the net's input is a vector (input 784)",
        "a flatten or fc earlier",
        "the note blamed 'a flatten or fc earlier in the chain' when the net's own input is a "
        "vector",
    ),
    (
        "bare word for padding",
        "input 3x8x8\nconv3x3(4, p=full)\n",
        "padding must be same, valid or an integer, got full",
        "unknown name",
        "p=full said only \"unknown name 'full'\"",
    ),
    (
        "argument to a layer that takes none",
        "input 3x8x8\nrelu(3)\n",
        "'relu' takes no arguments",
        "at most 0",
        "\"'relu' takes at most 0 positional arguments\" read like a bug",
    ),
    (
        "deconv minimum input",
        "input 1x1x1\ndeconv(1, k=1, s=1, p=1)\n",
        "at least 3x3, got 1x1",
        "at least 1x1, got 1x1",
        "'deconv needs an input of at least 1x1, got 1x1' contradicted itself",
    ),
    (
        "definition keyword",
        "def blk(c, stride=1) = conv3x3/stride(c)\ninput 3x8x8\nblk(4, stide=2)\n",
        "note: blk takes c, stride\n  note: did you mean 'stride'?",
        "",
        "an unknown keyword of a definition got no did-you-mean and no note listing the parameters",
    ),
]


@pytest.mark.parametrize(
    ("text", "wanted", "unwanted"),
    [
        pytest.param(
            *c[1:4],
            id=c[0],
            marks=[pytest.mark.xfail(strict=True, reason=c[5])] if len(c) > 5 else [],
        )
        for c in CLEARER
    ],
)
def test_clearer_message(text: str, wanted: str, unwanted: str) -> None:
    message = rendered(text)
    assert wanted in message
    assert not unwanted or unwanted not in message


def test_an_import_cycle_names_its_files(write_net) -> None:  # type: ignore[no-untyped-def]
    main = write_net('import "a.net"\ninput 3x8x8\nrelu\n', "main.net")
    write_net('import "b.net"\n', "a.net")
    write_net('import "a.net"\n', "b.net")
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.load(main)
    assert "imports itself" not in caught.value.render()
    assert caught.value.message == "import cycle: a.net -> b.net -> a.net"


def test_an_error_inside_a_repetition_is_reported_once() -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse("input 3x8x8\n[conv3x3(4, p=-1)]*3\n", "bad.net")
    assert len(caught.value.diagnostics) == 1


def test_deeply_nested_definitions_point_at_the_text() -> None:
    text = "def d0 = relu\n" + "".join(f"def d{i} = d{i - 1}\n" for i in range(1, 3000))
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text + "input 3x8x8\nd2999\n", "bad.net")
    assert caught.value.span is not None


@pytest.mark.parametrize(
    "text",
    [
        "input 3x8x8\nconv1x1(" + "9" * 5000 + ")\n",
        "input 3x" + "9" * 5000 + "x8\nrelu\n",
        "input 3x8x8\nconv" + "4" * 5000 + "(4)\n",
    ],
    ids=["argument", "input", "layer-name"],
)
def test_a_huge_integer_literal_is_a_net_error(text: str) -> None:
    try:
        netdsl.parse(text, "bad.net")
    except netdsl.NetError as error:
        assert error.span is not None and error.span.line in (1, 2)
        return
    raise AssertionError("accepted")


@pytest.mark.parametrize(
    "brk", ["\x0c", "\r", "\u2028", "\x0b", "\x85"], ids=["form-feed", "cr", "u2028", "vt", "nel"]
)
def test_a_snippet_shows_the_line_lark_counted(brk: str) -> None:
    assert rendered(f"# one{brk}comment\ninput 3x8x8\nrleu\n") == lines(
        "bad.net:3:1: error: unknown layer 'rleu'",
        "  rleu",
        "  ^^^^",
        "  note: did you mean 'relu'?",
    )


# ---- warnings ------------------------------------------------------------------------------

WARNINGS = [
    (
        "last row and column",
        "input 1x7x7\nconv2x2/2(4, p=valid)\n",
        lines(
            "bad.net:2:1: warning: conv2x2/2: stride floor((7 + 0 - 2)/2) + 1 = 3 leaves the last "
            "row and column of the input unused",
            "  conv2x2/2(4, p=valid)",
            "  ^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "several rows",
        "input 1x9x9\nconv(4, k=2, s=4, p=valid)\n",
        lines(
            "bad.net:2:1: warning: conv: stride floor((9 + 0 - 2)/4) + 1 = 2 leaves the last 3 rows "
            "and columns of the input unused",
            "  conv(4, k=2, s=4, p=valid)",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    (
        "row and column apart",
        "input 1x7x9\nmaxpool\n",
        lines(
            "bad.net:2:1: warning: maxpool: stride floor((7 + 0 - 2)/2) + 1 = 3 leaves the last row "
            "of the input unused",
            "  maxpool",
            "  ^^^^^^^",
            "bad.net:2:1: warning: maxpool: stride floor((9 + 0 - 2)/2) + 1 = 4 leaves the last "
            "column of the input unused",
            "  maxpool",
            "  ^^^^^^^",
        ),
    ),
    (
        "in a definition",
        "def down(c) = conv3x3(c, p=valid) -> maxpool\ninput 3x32x32\n"
        "[down(c) -> relu] for c in [8, 16]\n",
        lines(
            "bad.net:1:38: warning: maxpool: stride floor((13 + 0 - 2)/2) + 1 = 6 leaves the last "
            "row and column of the input unused",
            "  def down(c) = conv3x3(c, p=valid) -> maxpool",
            "                                       ^^^^^^^",
            "  note: in down(16), used at bad.net:3:2",
        ),
    ),
    (
        "the first layer of AlexNet",
        "input 3x224x224\nconv11x11/4(96, p=valid)\n",
        lines(
            "bad.net:2:1: warning: conv11x11/4: stride floor((224 + 0 - 11)/4) + 1 = 54 leaves the last row and column of the input unused",
            "  conv11x11/4(96, p=valid)",
            "  ^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
    ),
    ("only padding unread", "input 3x224x224\nconv7x7/2(64, p=3) -> maxpool3x3/2(p=1)\n", ""),
    ("same never drops", "input 3x7x7\nconv2x2/2(4) -> maxpool(p=same)\n", ""),
]


@pytest.mark.parametrize(
    ("text", "expected"), [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS]
)
def test_warning(text: str, expected: str) -> None:
    net = netdsl.parse(text, "bad.net")
    assert lines(*(w.render() for w in net.warnings)) == expected
    assert all(w.severity == "warning" for w in net.warnings)


def test_errors_in_an_imported_file_point_into_that_file(tmp_path: Path) -> None:
    (tmp_path / "blocks.net").write_text("def blk(c) = conv3x3(c) -> rleu\n")
    (tmp_path / "main.net").write_text('import "blocks.net"\ninput 3x8x8\nblk(4)\n')
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.load(tmp_path / "main.net")
    assert caught.value.render() == lines(
        f"{tmp_path / 'blocks.net'}:1:28: error: unknown layer 'rleu'",
        "  def blk(c) = conv3x3(c) -> rleu",
        "                             ^^^^",
        "  note: did you mean 'relu'?",
        f"  note: in blk(4), used at {tmp_path / 'main.net'}:3:1",
    )
