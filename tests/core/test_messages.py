"""Golden error messages: what a user sees for typical mistakes, the whole rendered text.

A message is part of the product: a change to one shows up here as a diff to review.
"""

from __future__ import annotations

import pytest

import netdsl

CASES: list[tuple[str, str, str]] = [
    (
        "missing paren",
        "input 3x32x32\nconv3x3(64 -> relu\n",
        "bad.net:2:12: error: unexpected '->'\n  conv3x3(64 -> relu\n             ^^\n  note: is a ')' missing before it?\n  note: expected '%', ')', '*', '+', ',', '-', '/', ']', ...",
    ),
    (
        "missing arrow",
        "input 3x32x32\nconv3x3(64) relu\n",
        "bad.net:2:13: error: unexpected 'relu'\n  conv3x3(64) relu\n              ^^^^\n  note: is a '->' missing before it?\n  note: expected '*', ',', '->', ']', 'for', '|', '}', end of file, ...",
    ),
    (
        "unknown layer",
        "input 3x32x32\nconv3x3(64) -> rleu\n",
        "bad.net:2:16: error: unknown layer 'rleu'\n  conv3x3(64) -> rleu\n                 ^^^^\n  note: did you mean 'relu'?",
    ),
    (
        "unknown name",
        "input 3x32x32\nconv3x3(width)\n",
        "bad.net:2:9: error: unknown name 'width'\n  conv3x3(width)\n          ^^^^^",
    ),
    (
        "bad value",
        "input 3x32x32\nconv3x3(64, p=-1)\n",
        "bad.net:2:13: error: conv p: expected an integer >= 0, got -1\n  conv3x3(64, p=-1)\n              ^^^^",
    ),
    (
        "bad probability",
        "input 3x32x32\ndropout(1.5)\n",
        "bad.net:2:9: error: dropout p: expected a probability in [0, 1), got 1.5\n  dropout(1.5)\n          ^^^",
    ),
    (
        "given twice",
        "input 3x32x32\nconv3x3(64, k=5)\n",
        "bad.net:2:13: error: 'k' given twice (the name already says it)\n  conv3x3(64, k=5)\n              ^^^",
    ),
    (
        "unknown keyword",
        "input 3x32x32\nconv3x3(64, stride=2)\n",
        "bad.net:2:13: error: 'conv3x3' has no parameter 'stride'\n  conv3x3(64, stride=2)\n              ^^^^^^^^\n  note: conv takes c, k, s, p, d, groups, bias",
    ),
    (
        "repetition",
        "input 3x32x32\n[[conv3x3(64) -> relu]*2 -> pool]*6 -> fc(10)\n",
        "bad.net:2:29: error: pool needs an input of at least 2x2, got 1x1\n  [[conv3x3(64) -> relu]*2 -> pool]*6 -> fc(10)\n                              ^^^^\n  note: height and width: floor((1 + 0 - 2)/2) + 1 = 0\n  note: in repetition 6 of 6; input sizes 32x32 → 16x16 → 8x8 → 4x4 → 2x2 → 1x1",
    ),
    (
        "def in comprehension",
        "def block(c) = conv3x3(c) -> maxpool\nnet small:\n    input 3x8x8\n    block(c) for c in [16, 32, 64, 128]\n",
        "bad.net:1:30: error: maxpool needs an input of at least 2x2, got 1x1\n  def block(c) = conv3x3(c) -> maxpool\n                               ^^^^^^^\n  note: height and width: floor((1 + 0 - 2)/2) + 1 = 0\n  note: in item 4 of 4 (c=128); input sizes 8x8 → 4x4 → 2x2 → 1x1\n  note: in block(128), used at bad.net:4:5",
    ),
    (
        "residual mismatch",
        "input 16x8x8\nres[conv3x3(16, p=valid) -> conv1x1(32)]\n",
        "bad.net:2:1: error: residual add: the body gives 32x6x6 but its input is 16x8x8\n  res[conv3x3(16, p=valid) -> conv1x1(32)]\n  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  note: a projection shortcut (1x1 conv, stride s) maps a size N to ceil(N/s): no stride turns 8x8 into 6x6\n  note: write the shortcut yourself: res[body, shortcut=...]",
    ),
    (
        "concat mismatch",
        "input 16x8x8\n{conv3x3(8) | conv3x3/2(8)}\n",
        "bad.net:2:1: error: cannot concatenate 8x8x8, 8x4x4: all but the channels must agree\n  {conv3x3(8) | conv3x3/2(8)}\n  ^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    ),
    (
        "conv on a vector",
        "input 16x8x8\nflatten -> conv3x3(8)\n",
        "bad.net:2:12: error: conv3x3 needs a CxHxW input, got a vector of 1024\n  flatten -> conv3x3(8)\n             ^^^^^^^^^^\n  note: a flatten or fc earlier in the chain turned the image into a vector",
    ),
    (
        "three mistakes",
        "input 3x8x8\nrelux -> conv3x3(foo) -> fc(bar)\n",
        "bad.net:2:1: error: unknown layer 'relux'\n  relux -> conv3x3(foo) -> fc(bar)\n  ^^^^^\n  note: did you mean 'relu'?\nbad.net:2:18: error: unknown name 'foo'\n  relux -> conv3x3(foo) -> fc(bar)\n                   ^^^\nbad.net:2:29: error: unknown name 'bar'\n  relux -> conv3x3(foo) -> fc(bar)\n                              ^^^",
    ),
    (
        "locally connected",
        "input 3x8x8\nlocal(16)\n",
        "bad.net:2:1: error: 'local': locally connected layers (unshared weights) are not supported; use conv for shared weights\n  local(16)\n  ^^^^^",
    ),
    (
        "absurd repetition",
        "input 3x8x8\n[conv3x3(64)]*1000000000\n",
        "bad.net:2:15: error: repetition count 1,000,000,000 exceeds the limit of 20,000 layers per net\n  [conv3x3(64)]*1000000000\n                ^^^^^^^^^^",
    ),
    (
        "huge weight",
        "input 3x8x8\nfc(100000) -> fc(100000)\n",
        "bad.net:2:15: error: fc: its weight tensor would have 10,000,000,000 elements (100000x100000), more than the limit of 2^31 - 1\n  fc(100000) -> fc(100000)\n                ^^^^^^^^^^",
    ),
    (
        "input dims",
        "input 3x32\nrelu\n",
        "bad.net:1:7: error: input takes C or CxHxW, got 2 dimensions\n  input 3x32\n        ^^^^",
    ),
    (
        "recursion",
        "def a(x) = b(x)\ndef b(x) = a(x)\ninput 3x8x8\na(1)\n",
        "bad.net:2:12: error: 'a' uses itself; definitions cannot recurse\n  def b(x) = a(x)\n             ^\n  note: in b(1), used at bad.net:1:12\n  note: in a(1), used at bad.net:4:1",
    ),
    (
        "missing def argument",
        "def blk(c, s) = conv3x3/s(c)\ninput 3x8x8\nblk(4)\n",
        "bad.net:3:1: error: 'blk' needs a value for 's'\n  blk(4)\n  ^^^^^^\n  note: 'blk' is defined at bad.net:1:1",
    ),
]


@pytest.mark.parametrize(("what", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_error_message(what: str, text: str, expected: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    assert caught.value.render() == expected


WARNINGS = [
    (
        "input 1x7x7\nconv2x2/2(4, p=valid)\n",
        "bad.net:2:1: warning: conv2x2/2: stride floor((7 + 0 - 2)/2) + 1 = 3 leaves the last row "
        "and column of the input unused\n  conv2x2/2(4, p=valid)\n  ^^^^^^^^^^^^^^^^^^^^^",
    ),
    (
        "input 3x224x224\nconv11x11/4(96, p=valid)\n",
        "bad.net:2:1: warning: conv11x11/4: stride floor((224 + 0 - 11)/4) + 1 = 54 leaves the last "
        "row and column of the input unused\n  conv11x11/4(96, p=valid)\n  ^^^^^^^^^^^^^^^^^^^^^^^^",
    ),
    (
        "input 1x7x9\nmaxpool\n",
        "bad.net:2:1: warning: maxpool: stride floor((7 + 0 - 2)/2) + 1 = 3 leaves the last row of "
        "the input unused\n  maxpool\n  ^^^^^^^\n"
        "bad.net:2:1: warning: maxpool: stride floor((9 + 0 - 2)/2) + 1 = 4 leaves the last column "
        "of the input unused\n  maxpool\n  ^^^^^^^",
    ),
    ("input 3x224x224\nconv7x7/2(64, p=3) -> maxpool3x3/2(p=1)\n", ""),  # only padding unread
]


@pytest.mark.parametrize(("text", "expected"), WARNINGS)
def test_warnings(text: str, expected: str) -> None:
    net = netdsl.parse(text, "bad.net")
    assert "\n".join(w.render() for w in net.warnings) == expected
