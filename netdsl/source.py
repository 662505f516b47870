"""Source text, spans and the one error type.

The first stop of the pipeline and the last word of every stage: each IR node keeps a `Span`,
each span keeps its `Source`, so any pass can raise a `NetError` that prints the file, line,
column, the source line and a caret under the offending text, without being handed the text
again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """A named piece of text; `name` is what error messages print (a path or `<string>`)."""

    name: str
    text: str = field(repr=False)
    lines: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Lines are counted by "\n" alone, as lark counts them: str.splitlines() would also break
        # at a lone \r, a form feed or U+2028 and show the wrong line under a right line number.
        lines = self.text.split("\n")
        if lines and not lines[-1]:
            lines.pop()
        object.__setattr__(self, "lines", tuple(line.removesuffix("\r") for line in lines))

    def line(self, number: int) -> str:
        return self.lines[number - 1] if 0 < number <= len(self.lines) else ""


@dataclass(frozen=True, slots=True)
class Span:
    """A 1-based line/column range of a `Source`; `end_column` is exclusive."""

    source: Source
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def where(self) -> str:
        return f"{self.source.name}:{self.line}:{self.column}"

    def snippet(self) -> str:
        """The source line and a caret under the span (clipped to the first line); a long line
        is cut to a window around the caret, and characters a terminal would act on (a lone
        \r, a form feed, U+2028) print as spaces so the caret stays under its column."""
        text = self.source.line(self.line)
        if not text.strip():
            return ""
        start = self.column - 1
        end = self.end_column - 1 if self.end_line == self.line else len(text)
        end = max(start + 1, min(end, len(text) + 1))
        left = ""
        if len(text) > SNIPPET_WIDTH:
            first = max(0, min(start - SNIPPET_WIDTH // 3, len(text) - SNIPPET_WIDTH))
            last = first + SNIPPET_WIDTH
            left, right = ("… " if first else ""), (" …" if last < len(text) else "")
            text, start, end = text[first:last], start - first, min(end, last + 1) - first
            text = left + text + right
            start, end = start + len(left), end + len(left)
        shown = "".join(ch if ch == "\t" or ch.isprintable() else " " for ch in text)
        indent = "".join("\t" if ch == "\t" else " " for ch in shown[:start])
        return f"  {shown}\n  {indent}{'^' * (end - start)}"


SNIPPET_WIDTH = 100  # a longer line is shown cut to this many characters around the caret
MAX_SHOWN = 20  # diagnostics printed per error; the rest are counted ("… and 12 more errors")

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One message about the text: an error, a warning or a note, with its notes."""

    message: str
    span: Span | None = None
    notes: tuple[str, ...] = ()
    severity: Severity = "error"

    def render(self) -> str:
        where = f"{self.span.where}: " if self.span else ""
        parts = [f"{where}{self.severity}: {self.message}"]
        if self.span is not None:
            snippet = self.span.snippet()
            if snippet:
                parts.append(snippet)
        parts.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(parts)


@dataclass(eq=False)
class NetError(Exception):
    """The project's one error type: one or more diagnostics, each pointing at text."""

    diagnostics: tuple[Diagnostic, ...] = field(default=())

    def __init__(
        self,
        message: str | Iterable[Diagnostic],
        span: Span | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        if isinstance(message, str):
            self.diagnostics = (Diagnostic(message, span, tuple(notes)),)
        else:
            self.diagnostics = tuple(message)
        super().__init__(self.render())

    @property
    def message(self) -> str:
        return self.diagnostics[0].message

    @property
    def span(self) -> Span | None:
        return self.diagnostics[0].span

    def render(self) -> str:
        shown = [d.render() for d in self.diagnostics[:MAX_SHOWN]]
        hidden = len(self.diagnostics) - MAX_SHOWN
        if hidden > 0:
            shown.append(f"… and {hidden:,} more error{'s' if hidden > 1 else ''}")
        return "\n".join(shown)

    def __str__(self) -> str:
        return self.render()


class Diagnostics:
    """Collects the errors of a pass so that one run reports several independent mistakes."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def error(self, message: str, span: Span | None, notes: Iterable[str] = ()) -> None:
        # one mistake inside a repetition is one error, not one per repetition
        if any(d.message == message and d.span == span for d in self.items[-50:]):
            return
        self.items.append(Diagnostic(message, span, tuple(notes)))

    def extend(self, error: NetError) -> None:
        self.items.extend(error.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    def raise_if_any(self) -> None:
        if self.errors:
            raise NetError(self.errors)
