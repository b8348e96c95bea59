"""Evaluation of parameter expressions (integers, floats, booleans) with located errors."""
from __future__ import annotations

import difflib
import math
import operator
from typing import Any, Callable, Mapping, Protocol

from compiler.errors import ArchError
from compiler.frontend import ast
from compiler.limits import DEFAULT_LIMITS, Limits, limit_error

Value = int | float | bool


class Chooser(Protocol):
    """Picks an option of a choice point; the compiler alone has none (a file with choices is a space)."""

    def __call__(self, choice: ast.Choice, context: str) -> int: ...


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a width to a multiple of ``divisor`` without losing more than 10 % (MobileNet/EfficientNet rule)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _select(condition: bool, if_true: Value, if_false: Value) -> Value:
    if not isinstance(condition, bool):
        raise TypeError("the first argument of select() must be true or false")
    return if_true if condition else if_false


FUNCTIONS: Mapping[str, Callable[..., Value]] = {
    "select": _select, "min": min, "max": max, "abs": abs, "int": int, "float": float,
    "round": lambda v: int(round(v)), "ceil": lambda v: int(math.ceil(v)), "floor": lambda v: int(math.floor(v)),
    "make_divisible": make_divisible,
}

_BINARY: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "%": operator.mod, "**": operator.pow, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _kind(v: Any) -> str:
    return "a boolean" if isinstance(v, bool) else "a number"


def _pow_bits(base: Any, exponent: Any) -> int:
    """A lower bound on the bits of ``base ** exponent`` for integers (0 when small or not an integer power)."""
    if isinstance(base, bool) or isinstance(exponent, bool) or not isinstance(base, int) \
            or not isinstance(exponent, int) or exponent <= 0 or abs(base) < 2:
        return 0
    return (abs(base).bit_length() - 1) * exponent + 1


class Evaluator:
    """Evaluates expressions against named constants (model/block parameters, `let`s and loop variables)."""

    def __init__(self, consts: Mapping[str, Value], *, values: Mapping[str, str] | None = None,
                 chooser: Chooser | None = None, context: str = "", source: str | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.consts = consts
        self.values = values or {}
        self.chooser = chooser
        self.context = context
        self.source = source
        self.limits = limits

    def error(self, message: str, node: ast.Node, hint: str | None = None) -> ArchError:
        return ArchError(message, node.span, self.source, hint)

    def __call__(self, expr: ast.Expr) -> Value:
        method = getattr(self, "_" + type(expr).__name__)
        return method(expr)

    def _Literal(self, e: ast.Literal) -> Value:
        return e.value

    def _Name(self, e: ast.Name) -> Value:
        if e.id in self.consts:
            return self.consts[e.id]
        if e.id in self.values:
            raise self.error(f"'{e.id}' is a tensor value, but an expression needs a number here", e,
                             "parameters, `let`s and loop variables can be used in expressions")
        hint = difflib.get_close_matches(e.id, list(self.consts), n=1)
        raise self.error(f"undefined name '{e.id}'", e, f"did you mean '{hint[0]}'?" if hint else None)

    def _UnaryOp(self, e: ast.UnaryOp) -> Value:
        v = self(e.operand)
        if e.op == "not":
            if not isinstance(v, bool):
                raise self.error(f"'not' needs a boolean, got {_kind(v)}", e)
            return not v
        if isinstance(v, bool):
            raise self.error("cannot negate a boolean", e)
        return -v

    def _BinOp(self, e: ast.BinOp) -> Value:
        left = self(e.left)
        if e.op in ("and", "or"):
            if not isinstance(left, bool):
                raise self.error(f"'{e.op}' needs booleans, got {_kind(left)}", e.left)
            if (e.op == "and" and not left) or (e.op == "or" and left):
                return left
            right = self(e.right)
            if not isinstance(right, bool):
                raise self.error(f"'{e.op}' needs booleans, got {_kind(right)}", e.right)
            return right
        right = self(e.right)
        if e.op not in ("==", "!=") and (isinstance(left, bool) or isinstance(right, bool)):
            raise self.error(f"operator '{e.op}' needs numbers, not booleans", e)
        if e.op in ("/", "//", "%") and right == 0:
            raise self.error("division by zero", e.right)
        if e.op == "**" and _pow_bits(left, right) > self.limits.max_int_bits:  # refused before it is computed
            raise limit_error(self.limits, "max_int_bits", f"number too large: {left} ** {right} has more than "
                              f"{_pow_bits(left, right):,} bits", e.span, self.source)
        try:
            result = _BINARY[e.op](left, right)
        except ZeroDivisionError as err:  # 0 ** -1
            raise self.error(f"cannot evaluate '{e.op}': division by zero", e) from err
        except (OverflowError, ValueError, TypeError) as err:
            raise self.error(f"cannot evaluate '{e.op}': {err}", e) from err
        return self._checked(result, f"'{e.op}'", e)

    def _checked(self, result: Any, what: str, e: ast.Node) -> Value:
        """Only finite real numbers of bounded size leave an expression."""
        if isinstance(result, complex):
            raise self.error(f"{what} gives the complex number {result:.3g}; expressions compute real numbers", e,
                             "a negative number to a fractional power has no real value")
        if isinstance(result, float) and not math.isfinite(result):
            raise self.error(f"{what} gives a non-finite number", e)
        if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > self.limits.max_int_bits:
            raise limit_error(self.limits, "max_int_bits", f"number too large: {what} gives an integer of "
                              f"{result.bit_length():,} bits", e.span, self.source)
        if not isinstance(result, (int, float)):
            raise self.error(f"{what} gives {type(result).__name__} {result!r}, not a number", e)
        return result

    def _Call(self, e: ast.Call) -> Value:
        fn = FUNCTIONS.get(e.func)
        if fn is None:
            hint = difflib.get_close_matches(e.func, list(FUNCTIONS), n=1)
            raise self.error(f"unknown function '{e.func}' in an expression", e,
                             f"did you mean '{hint[0]}'?" if hint else f"functions: {', '.join(sorted(FUNCTIONS))}")
        args = [self(a.value) for a in e.args if a.name is None]
        kwargs = {a.name: self(a.value) for a in e.args if a.name is not None}
        try:
            result = fn(*args, **kwargs)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as err:
            raise self.error(f"bad call to {e.func}(): {err}", e) from err
        return self._checked(result, f"{e.func}()", e)

    def _Choice(self, e: ast.Choice) -> Value:
        return self(e.options[choose(self.chooser, e, self.context, self.source)])


def choose(chooser: Chooser | None, choice: ast.Choice, context: str, source: str | None) -> int:
    if chooser is None:
        raise ArchError("this file contains a choice, so it describes a search space, not one model", choice.span,
                        source, "compile a concrete architecture, or search the space with +search=NAME")
    return chooser(choice, context)
