"""A tiny, safe arithmetic language for ``bantime.formula`` and ``bantime.factor``.

fail2ban passes these options to Python's ``eval``, which lets a config file run any code as
root. banish parses them with ``ast`` and accepts only a whitelist: numbers, the ban variables,
arithmetic, comparisons, ``a if c else b`` and a handful of pure functions. That covers the
default formula and the examples in jail.conf, and every accepted expression is compiled once
into closures, so evaluating it at ban time needs no parsing.

Owns: ``Formula``, ``FormulaError``, ``compile_formula``, ``evaluate_constant``.
Must not: call ``eval``/``exec``, import config or I/O code, or grow without bound (every
operation checks the size of its result).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

Number = int | float
_Env = Mapping[str, float]
_Node = Callable[[_Env], Number]

# Names a formula may use. ``ban.Time``/``ban.Count`` are fail2ban's spelling; the flat names
# are aliases so a formula can be written without the dotted object.
VARIABLES: Final = ("ban.Time", "ban.Count", "banFactor", "banTime", "banCount")
_FLAT_NAMES: Final = {"banFactor", "banTime", "banCount"}
_BAN_ATTRS: Final = {"Time": "banTime", "Count": "banCount"}

_MAX_SOURCE: Final = 1000
_MAX_NODES: Final = 300
_MAX_INT_BITS: Final = 4096  # an int result larger than this is a runaway, not a ban time
_MAX_SHIFT: Final = 1024

_FUNCTIONS: Final[dict[str, Callable[..., Number]]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "float": float,
    "int": int,
    "round": round,
}
_MATH_FUNCTIONS: Final[dict[str, Callable[..., Number]]] = {
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sqrt": math.sqrt,
    "pow": math.pow,
    "floor": math.floor,
    "ceil": math.ceil,
}
_MATH_CONSTANTS: Final = {"e": math.e, "pi": math.pi}
_ARITY: Final = {"min": (2, 16), "max": (2, 16), "round": (1, 2), "log": (1, 2), "pow": (2, 2)}


class FormulaError(ValueError):
    """An expression is not in the accepted language, or failed when evaluated."""


def _check(value: Number) -> Number:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise FormulaError("result too large")
        return value
    if not math.isfinite(value):
        raise FormulaError("result is not a finite number")
    return value


def _power(a: Number, b: Number) -> Number:
    # Guard before computing: 10 ** 10 ** 10 must fail fast instead of eating memory.
    if (
        isinstance(a, int)
        and isinstance(b, int)
        and b > 0
        and abs(a) > 1
        and a.bit_length() * b > _MAX_INT_BITS
    ):
        raise FormulaError("result too large")
    result: Number = a**b
    if isinstance(result, complex):
        raise FormulaError("result is not a real number")
    return result


def _lshift(a: Number, b: Number) -> Number:
    if not isinstance(a, int) or not isinstance(b, int):
        raise FormulaError("<< needs whole numbers")
    if b > _MAX_SHIFT:
        raise FormulaError("shift too large")
    return a << b


def _rshift(a: Number, b: Number) -> Number:
    if not isinstance(a, int) or not isinstance(b, int):
        raise FormulaError(">> needs whole numbers")
    return a >> b


_BINOPS: Final[dict[type[ast.operator], Callable[[Number, Number], Number]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
    ast.LShift: _lshift,
    ast.RShift: _rshift,
}
_COMPARE: Final[dict[type[ast.cmpop], Callable[[Number, Number], bool]]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _constant(value: Number) -> _Node:
    return lambda _env: value


class _Compiler:
    """Turns a whitelisted AST into nested closures; anything else raises FormulaError."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def compile(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FormulaError(f"only numbers are allowed, not {value!r}")
            return _constant(value)
        if isinstance(node, ast.Name):
            return self._variable(node.id)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.IfExp):
            test, body, orelse = (self.compile(n) for n in (node.test, node.body, node.orelse))
            return lambda env: body(env) if test(env) else orelse(env)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise FormulaError(f"{type(node).__name__.lower()} expressions are not allowed")

    def _variable(self, name: str) -> _Node:
        if name not in self.names:
            raise FormulaError(
                f"unknown name {name!r} (allowed: {', '.join(sorted(self._allowed()))})"
            )
        return lambda env: env[name]

    def _allowed(self) -> set[str]:
        allowed = set(self.names)
        if "banTime" in self.names:
            allowed |= {"ban.Time", "ban.Count"}
        return allowed

    def _attribute(self, node: ast.Attribute) -> _Node:
        if isinstance(node.value, ast.Name):
            owner = node.value.id
            if owner == "ban" and node.attr in _BAN_ATTRS:
                return self._variable(_BAN_ATTRS[node.attr])
            if owner == "math" and node.attr in _MATH_CONSTANTS:
                return _constant(_MATH_CONSTANTS[node.attr])
        raise FormulaError(f"attribute {ast.unparse(node)!r} is not allowed")

    def _binop(self, node: ast.BinOp) -> _Node:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda env: _check(op(left(env), right(env)))

    def _unary(self, node: ast.UnaryOp) -> _Node:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda env: -operand(env)
        if isinstance(node.op, ast.UAdd):
            return operand
        raise FormulaError(f"operator {type(node.op).__name__} is not allowed")

    def _compare(self, node: ast.Compare) -> _Node:
        first = self.compile(node.left)
        steps: list[tuple[Callable[[Number, Number], bool], _Node]] = []
        for op, right in zip(node.ops, node.comparators, strict=True):
            fn = _COMPARE.get(type(op))
            if fn is None:
                raise FormulaError(f"comparison {type(op).__name__} is not allowed")
            steps.append((fn, self.compile(right)))

        def compare(env: _Env) -> Number:
            left = first(env)
            for fn, right_node in steps:
                right = right_node(env)
                if not fn(left, right):
                    return 0
                left = right
            return 1

        return compare

    def _call(self, node: ast.Call) -> _Node:
        fn: Callable[..., Number] | None = None
        name = ""
        if isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            name = node.func.id
            fn = _FUNCTIONS[name]
        elif (
            isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "math"
            and node.func.attr in _MATH_FUNCTIONS
        ):
            name = node.func.attr
            fn = _MATH_FUNCTIONS[name]
        if fn is None:
            raise FormulaError(f"function {ast.unparse(node.func)!r} is not allowed")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise FormulaError(f"{name}() takes plain positional arguments only")
        low, high = _ARITY.get(name, (1, 1))
        if not low <= len(node.args) <= high:
            raise FormulaError(f"{name}() takes {low}..{high} arguments, got {len(node.args)}")
        args = [self.compile(a) for a in node.args]
        call = fn
        return lambda env: _check(call(*(a(env) for a in args)))


def _compile(source: str, names: frozenset[str]) -> _Node:
    text = source.strip()
    if not text:
        raise FormulaError("empty expression")
    if len(text) > _MAX_SOURCE:
        raise FormulaError(f"expression longer than {_MAX_SOURCE} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"syntax error: {e.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise FormulaError("expression too complex")
    try:
        return _Compiler(names).compile(tree.body)
    except RecursionError:
        raise FormulaError("expression nested too deeply") from None


def _whole(value: float) -> Number:
    # fail2ban hands the formula ints for whole numbers (``10m`` is 600, not 600.0), and
    # formulas such as ``ban.Time >> 1`` depend on it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _run(node: _Node, env: _Env) -> float:
    try:
        return float(_check(node(env)))
    except FormulaError:
        raise
    except (ArithmeticError, ValueError, TypeError, RecursionError) as e:
        raise FormulaError(f"evaluation failed: {e}") from None


@dataclass(frozen=True, slots=True)
class Formula:
    """A compiled ``bantime.formula``; equal when the source text is equal (config diffing)."""

    source: str
    _node: _Node = field(compare=False, repr=False)

    def __call__(self, *, ban_time: float, ban_count: int, ban_factor: float) -> float:
        """The ban time for an address banned ``ban_count`` times before; raises FormulaError."""
        env = {"banTime": _whole(ban_time), "banCount": ban_count, "banFactor": _whole(ban_factor)}
        return _run(self._node, env)


def compile_formula(source: str) -> Formula:
    """Parse a ``bantime.formula`` and prove it evaluates for typical inputs.

    The trial run catches formulas that parse but can never work (``min(ban.Time)``, ``1 << 0.5``)
    at load time instead of at the first repeat offender.
    """
    node = _compile(source, frozenset(_FLAT_NAMES))
    formula = Formula(source.strip(), node)
    formula(ban_time=600.0, ban_count=1, ban_factor=1.0)
    return formula


def evaluate_constant(source: str) -> float:
    """Evaluate an expression without variables (``bantime.factor = 2.0 / 2.885385``)."""
    return _run(_compile(source, frozenset()), {})
