"""User-facing errors: every mistake in an .arch file is reported as FILE:LINE:COL with the line and a caret."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """Where a piece of IR or AST came from (1-based line and column)."""

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


UNKNOWN_SPAN = Span("<unknown>", 0, 0)
QUOTE_WIDTH = 100  # characters of a long source line quoted around the caret


class ArchError(Exception):
    """The one exception type for user mistakes (syntax, names, types, shapes, missing files).

    ``str(err)`` is ``FILE:LINE:COL: error: MESSAGE`` followed by the source line and a caret when known.
    """

    def __init__(self, message: str, span: Span | None = None, source: str | None = None,
                 hint: str | None = None, stage: str | None = None) -> None:
        self.message = message
        self.span = span
        self.source = source
        self.hint = hint
        self.stage = stage
        super().__init__(self.render())

    def with_source(self, source: str | None) -> "ArchError":
        """The same error, able to quote its line from ``source``."""
        if source is None or self.source is not None:
            return self
        return ArchError(self.message, self.span, source, self.hint, self.stage)

    def render(self) -> str:
        where = str(self.span) if self.span and self.span.line else (self.span.file if self.span else "<input>")
        text = f"{where}: error: {self.message}"
        if self.stage:
            text += f" (in pass '{self.stage}')"
        line = self._source_line()
        if line is not None:
            caret_at = max(self.span.column - 1, 0)  # type: ignore[union-attr]
            width = 1
            if self.span and self.span.end_line == self.span.line and self.span.end_column > self.span.column:
                width = self.span.end_column - self.span.column
            if len(line) > QUOTE_WIDTH:  # a window of a long line around the caret
                start = max(0, min(caret_at - QUOTE_WIDTH // 3, len(line) - QUOTE_WIDTH))
                line = ("..." if start else "") + line[start:start + QUOTE_WIDTH] + \
                    ("..." if start + QUOTE_WIDTH < len(line) else "")
                caret_at = caret_at - start + (3 if start else 0)
                width = max(1, min(width, len(line) - caret_at))
            prefix = line[:caret_at].expandtabs(4)
            text += f"\n    {line.expandtabs(4)}\n    {' ' * len(prefix)}^{'~' * (width - 1)}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def _source_line(self) -> str | None:
        if not self.source or not self.span or self.span.line < 1:
            return None
        lines = self.source.split("\n")  # lines as the parser counts them (not str.splitlines: \f, \x1c, ...)
        if self.span.line > len(lines):
            return None
        line = lines[self.span.line - 1].rstrip("\r")
        return line.lstrip("\ufeff") if self.span.line == 1 else line  # columns count after a byte order mark
