"""Text -> AST. One LALR parser built once per process from grammar/arch.lark (package data); located errors."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from lark import Lark, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from compiler.errors import ArchError, Span
from compiler.frontend import ast
from compiler.limits import DEFAULT_LIMITS, Limits, limit_error
from compiler.resources import grammar_text

# How terminals are named in messages (Lark's own names are things like RPAR or __ANON_3).
_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "LPAR": "'('", "RPAR": "')'",
    "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "EQUAL": "'='",
    "COLON": "':'", "VBAR": "'|'", "STAR": "'*'", "MINUS": "'-'", "PLUS": "'+'", "SLASH": "'/'",
    "PERCENT": "'%'", "COMP_OP": "a comparison", "$END": "end of file",
}

# Typical mistakes, recognised by Lark's match_examples (the parser state they fail in).
_EXAMPLES: dict[str, list[str]] = {
    "missing '->' between layers (write `x -> conv(16, 3) -> relu`)": [
        "model m() { input x: [1, 2, 2]\n output x -> relu relu }",
        "model m() { input x: [1, 2, 2]\n output x -> conv(1) relu }",
        "model m() { input x: [1, 2, 2]\n y = x relu }",
    ],
    "a flow must start from a value, e.g. `y = x -> relu` (not `y = relu`)": [
        "model m() { input x: [1, 2, 2]\n y = relu(1)\n output y }",
    ],
    "unclosed '{': a model or block body must end with '}'": [
        "model m() { input x: [1, 2, 2]\n output x",
        "block b() { input x\n output x",
    ],
    "unclosed '(' in an argument list": [
        "model m() { input x: [1, 2, 2]\n output x -> conv(1, 2 }",
    ],
}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _span(meta_or_token: Any, filename: str) -> Span:
    m = meta_or_token
    if getattr(m, "empty", False):
        return Span(filename, 0, 0)
    return Span(filename, m.line, m.column, getattr(m, "end_line", m.line) or m.line,
                getattr(m, "end_column", m.column) or m.column)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Lark parse tree -> ast dataclasses. Non-recursive, so that no nesting of the input overflows the stack
    here (the depth limit is checked on the AST, where the error can be located: see resolve.py)."""

    def __init__(self, filename: str, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__()
        self.f = filename
        self.limits = limits
        self.choices = 0   # choice sites numbered so far (the transformer completes them in source order)

    def _s(self, meta: Any) -> Span:
        return _span(meta, self.f)

    # definitions
    def start(self, meta, defs):
        return ast.Module(self.f, tuple(defs), span=self._s(meta))

    def _definition(self, kind, meta, children):
        name, *rest = children
        params = tuple(p for p in rest[:-1] if p is not None)
        return ast.Definition(kind, str(name), params, rest[-1], span=_span(name, self.f))

    def block_def(self, meta, children):
        return self._definition("block", meta, children)

    def model_def(self, meta, children):
        return self._definition("model", meta, children)

    def param(self, meta, children):
        name, default = children
        return ast.Param(str(name), default, span=_span(name, self.f))

    def body(self, meta, stmts):
        return tuple(stmts)

    # statements
    def input_stmt(self, meta, children):
        *names, shape = children
        return ast.InputStmt(tuple(str(n) for n in names), shape, span=self._s(meta))

    def shape(self, meta, dims):
        return tuple(dims)

    def assign_stmt(self, meta, children):
        name, flow = children
        return ast.AssignStmt(str(name), flow, span=_span(name, self.f))

    def let_stmt(self, meta, children):
        name, value = children
        return ast.LetStmt(str(name), value, span=_span(name, self.f))

    def output_stmt(self, meta, children):
        name, flow = children
        return ast.OutputStmt(flow, str(name) if name is not None else None, span=self._s(meta))

    def for_stmt(self, meta, children):
        var, a, b, body = children
        return ast.ForStmt(str(var), a, b, body, span=_span(var, self.f))

    def if_stmt(self, meta, children):
        cond, then, otherwise = children
        if isinstance(otherwise, ast.IfStmt):
            otherwise = (otherwise,)
        return ast.IfStmt(cond, then, otherwise or (), span=self._s(meta))

    # flows
    def flow(self, meta, children):
        source, *layers = children
        return ast.Flow(source, tuple(layers), span=self._s(meta))

    def value_ref(self, meta, children):
        return str(children[0])

    def tuple_source(self, meta, flows):
        return tuple(flows)

    def layer(self, meta, children):
        target, label, repeat = children
        return ast.Layer(target, repeat, str(label) if label is not None else None, span=target.span)

    def choice_layer(self, meta, children):
        target, repeat = children
        return ast.Layer(target, repeat, span=target.span)

    def bare_call(self, meta, children):
        return ast.Call(str(children[0]), (), False, span=_span(children[0], self.f))

    def call(self, meta, children):
        name, args = children
        return ast.Call(str(name), tuple(args or ()), True, span=self._s(meta))

    def arguments(self, meta, args):
        return list(args)

    def positional(self, meta, children):
        return ast.Argument(None, children[0], span=children[0].span)

    def keyword(self, meta, children):
        name, value = children
        return ast.Argument(str(name), value, span=_span(name, self.f))

    def choice(self, meta, children):
        *options, label = children
        self.choices += 1
        return ast.Choice(tuple(options), str(label) if label is not None else None, span=self._s(meta),
                          site=self.choices - 1)

    # expressions
    def int_lit(self, meta, children):
        token = children[0]
        digits = str(token).lstrip("0") or "0"
        # Refused from its digit count before int() converts it (a number of n digits has more than 3.32 (n-1)
        # bits): no huge integer is ever built.
        if (len(digits) - 1) * 3.32 >= self.limits.max_int_bits or int(digits).bit_length() > self.limits.max_int_bits:
            raise limit_error(self.limits, "max_int_bits", f"integer literal of {len(digits):,} digits is too large",
                              _span(token, self.f))
        return ast.Literal(int(digits), span=_span(token, self.f))

    def float_lit(self, meta, children):
        value = float(children[0])
        if not math.isfinite(value):
            raise ArchError(f"number {str(children[0])[:40]} is too large for a float", _span(children[0], self.f))
        return ast.Literal(value, span=_span(children[0], self.f))

    def true_lit(self, meta, children):
        return ast.Literal(True, span=self._s(meta))

    def false_lit(self, meta, children):
        return ast.Literal(False, span=self._s(meta))

    def name_ref(self, meta, children):
        return ast.Name(str(children[0]), span=_span(children[0], self.f))

    def func_call(self, meta, children):
        name, args = children
        return ast.Call(str(name), tuple(args or ()), True, span=self._s(meta))

    def _bin(self, meta, left, op, right):
        return ast.BinOp(op, left, right, span=self._s(meta))

    def compare(self, meta, children):
        left, op, right = children
        return self._bin(meta, left, str(op), right)

    def add(self, meta, children):
        return self._bin(meta, children[0], "+", children[1])

    def sub(self, meta, children):
        return self._bin(meta, children[0], "-", children[1])

    def mul(self, meta, children):
        return self._bin(meta, children[0], "*", children[1])

    def truediv(self, meta, children):
        return self._bin(meta, children[0], "/", children[1])

    def floordiv(self, meta, children):
        return self._bin(meta, children[0], "//", children[1])

    def mod(self, meta, children):
        return self._bin(meta, children[0], "%", children[1])

    def pow(self, meta, children):
        return self._bin(meta, children[0], "**", children[1])

    def or_op(self, meta, children):
        return self._bin(meta, children[0], "or", children[1])

    def and_op(self, meta, children):
        return self._bin(meta, children[0], "and", children[1])

    def not_op(self, meta, children):
        return ast.UnaryOp("not", children[0], span=self._s(meta))

    def neg(self, meta, children):
        return ast.UnaryOp("-", children[0], span=self._s(meta))


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(t, f"'{t.lower()}'" if t.isupper() and not t.startswith("__") else t)
                    for t in expected if not t.startswith("__")})
    if not names:
        return ""
    if len(names) > 6:
        names = names[:6] + ["..."]
    return "; expected " + ", ".join(names)


def _syntax_error(err: UnexpectedInput, text: str, filename: str) -> ArchError:
    line, col = getattr(err, "line", 0) or 0, getattr(err, "column", 0) or 0
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        lines = text.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()
        line, col = len(lines), len(lines[-1].rstrip("\r")) + 1
    span = Span(filename, line, col)
    known = err.match_examples(_lark().parse, _EXAMPLES, use_accepts=True)
    if isinstance(err, UnexpectedCharacters):
        message = f"unexpected character {text[err.pos_in_stream]!r}"
    elif isinstance(err, UnexpectedToken):
        tok = err.token
        shown = "end of file" if tok.type == "$END" else repr(str(tok))
        message = f"unexpected {shown}{_describe_expected(err.expected)}"
    else:
        message = "unexpected end of file"
    return ArchError(f"syntax error: {known}" if known else f"syntax error: {message}", span, text)


BOM = "\ufeff"


def check_source_size(text: str, filename: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse source text over ``limits.max_source_bytes`` (UTF-8) before any work is done on it."""
    if len(text) > limits.max_source_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_source_bytes:
        size = len(text.encode("utf-8", "surrogatepass"))
        raise limit_error(limits, "max_source_bytes", f"the source is {size:,} bytes, too large to compile",
                          Span(filename, 1, 1), needed=size)


def parse(text: str, filename: str = "<string>", limits: Limits = DEFAULT_LIMITS) -> ast.Module:
    """Parse .arch source text into an ``ast.Module``; raises ``ArchError`` with a location on bad syntax.

    A leading UTF-8 byte order mark is ignored (columns count from the character after it)."""
    check_source_size(text, filename, limits)
    text = text[1:] if text.startswith(BOM) else text
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text, filename) from None
    try:
        return _ToAst(filename, limits).transform(tree)
    except VisitError as err:  # an ArchError raised while converting (a literal too large), or a bug: keep it
        raise err.orig_exc from err
