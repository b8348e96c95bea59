"""The abstract syntax tree of an .arch file: plain frozen dataclasses, each with its source span."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from compiler.errors import UNKNOWN_SPAN, Span


@dataclass(frozen=True)
class Node:
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False, kw_only=True)


# ---- expressions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal(Node):
    value: int | float | bool


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / // % ** == != < <= > >= and or
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # - not
    operand: "Expr"


@dataclass(frozen=True)
class Argument(Node):
    name: str | None  # None for positional
    value: "Expr"


@dataclass(frozen=True)
class Call(Node):
    """``name(args)``: a function in an expression, an op or block in a layer position."""

    func: str
    args: tuple[Argument, ...] = ()
    has_parens: bool = False


@dataclass(frozen=True)
class Choice(Node):
    """``[a | b | c] as label``: a choice point of a search space.

    ``site`` numbers the choices of one parse (0, 1, ... in the order their closing ``]`` appears): the stable key
    of the site in a Space's site table (compiler/frontend/sites.py), which survives pickling, as no object id does.
    """

    options: tuple["Expr", ...]
    label: str | None = None
    site: int = field(default=-1, compare=False, kw_only=True)


Expr = Union[Literal, Name, BinOp, UnaryOp, Call, Choice]


# ---- flows (dataflow) --------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer(Node):
    """One element of a chain: an op, a block instance, or a choice among them, maybe repeated."""

    target: Call | Choice
    repeat: Expr | None = None
    label: str | None = None       # `block(...) as name`: own decisions for the choices inside


@dataclass(frozen=True)
class Flow(Node):
    """``source -> layer -> layer``; a source is a value name, a tuple of flows, or a choice among value names."""

    sources: tuple["Flow", ...] | str | Choice
    layers: tuple[Layer, ...] = ()


# ---- statements --------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputStmt(Node):
    names: tuple[str, ...]
    shape: tuple[Expr, ...] | None = None


@dataclass(frozen=True)
class AssignStmt(Node):
    target: str
    flow: Flow


@dataclass(frozen=True)
class LetStmt(Node):
    target: str
    value: Expr


@dataclass(frozen=True)
class OutputStmt(Node):
    flow: Flow
    name: str | None = None        # None: the main output; a name: an auxiliary (training-only) output


@dataclass(frozen=True)
class ForStmt(Node):
    var: str
    start: Expr
    stop: Expr | None
    body: tuple["Stmt", ...]


@dataclass(frozen=True)
class IfStmt(Node):
    condition: Expr
    then: tuple["Stmt", ...]
    otherwise: tuple["Stmt", ...] = ()


Stmt = Union[InputStmt, AssignStmt, LetStmt, OutputStmt, ForStmt, IfStmt]


# ---- definitions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param(Node):
    name: str
    default: Expr | None = None


@dataclass(frozen=True)
class Definition(Node):
    """A ``block`` (reusable, instantiated in flows) or the ``model`` (the file's entry)."""

    kind: str  # "block" | "model"
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Module(Node):
    filename: str
    definitions: tuple[Definition, ...]
