"""Safe parsing of user expressions: an AST whitelist, then ``sympy.parse_expr``.

A density string may contain only names (the declared variable and parameters, a fixed set of
math functions and the constants pi, E, oo), numeric literals, arithmetic (``+ - * / ** ^``) and
plain calls of whitelisted functions.  Attribute access, subscripts, lambdas, comprehensions,
strings, keyword arguments and every other construct are rejected *before* anything is
evaluated, and ``parse_expr`` then runs with empty ``__builtins__`` and a namespace holding only
the whitelisted objects.  Errors are one-line ``ValueError`` messages.

Bounded work before any evaluation: sympy evaluates constant subexpressions eagerly
(``9**9**9**9``, ``factorial(10**8)`` never return), so the AST is first checked against explicit
limits: integer literals of at most ``MAX_INT_DIGITS`` digits, constant exponents of magnitude at
most ``MAX_EXPONENT``, arguments of factorial/gamma/binomial/beta/loggamma of magnitude at most
``MAX_SPECIAL_ARG``, and every constant subexpression bounded by ``10**MAX_LOG10`` (tracked as
an upper bound on ``log10 |value|`` with interval rules: products add, powers multiply by the
exponent bound).  Under these limits every exact integer sympy builds has at most about
``MAX_LOG10`` digits, so parsing takes milliseconds.  Results that are undefined (``1/0`` gives
``zoo``, ``0/0`` gives ``nan``) are refused.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Mapping

import sympy as sp
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

__all__ = ["SAFE_FUNCTIONS", "SAFE_CONSTANTS", "safe_parse", "parse_support", "check_name"]

# Whitelisted functions/constants for user density strings (name -> sympy object).
SAFE_FUNCTIONS: dict[str, Any] = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "gamma": sp.gamma, "beta": sp.beta,
    "factorial": sp.factorial, "binomial": sp.binomial, "Abs": sp.Abs, "abs": sp.Abs,
    "Heaviside": sp.Heaviside, "erf": sp.erf, "erfc": sp.erfc, "sin": sp.sin, "cos": sp.cos,
    "tan": sp.tan, "atan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "loggamma": sp.loggamma, "Min": sp.Min, "Max": sp.Max,
}
SAFE_CONSTANTS: dict[str, Any] = {"pi": sp.pi, "E": sp.E, "oo": sp.oo}
_MAX_EXPR_LEN = 2000
MAX_INT_DIGITS = 30
MAX_EXPONENT = 10_000
MAX_SPECIAL_ARG = 1000
MAX_LOG10 = 10_000
_SPECIAL = {"factorial", "gamma", "binomial", "beta", "loggamma"}
_EXPLIKE = {"exp", "sinh", "cosh"}
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load,
                  ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
                  ast.BitXor)


def check_name(name: str, what: str) -> str:
    name = str(name).strip()
    if not name.isidentifier() or name.startswith("_") or name in SAFE_FUNCTIONS \
            or name in SAFE_CONSTANTS or name in {"I", "S", "N", "O", "Q", "lambda"}:
        raise ValueError(f"{what}: invalid symbol name {name!r}")
    return name


def safe_parse(text: str, symbols: Mapping[str, sp.Symbol], what: str) -> sp.Expr:
    """Parse ``text`` with sympy after an AST whitelist; never evaluates anything else."""
    text = str(text).strip()
    if not text or len(text) > _MAX_EXPR_LEN:
        raise ValueError(f"{what}: expression is empty or longer than {_MAX_EXPR_LEN} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise ValueError(f"{what}: not a valid expression: {text[:80]!r}") from None
    allowed_names = set(symbols) | set(SAFE_FUNCTIONS) | set(SAFE_CONSTANTS)
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ValueError(f"{what}: {type(node).__name__} is not allowed in expressions")
        if isinstance(node, ast.Name) and node.id not in allowed_names:
            raise ValueError(f"{what}: unknown name {node.id!r} (allowed: variables, parameters, "
                             f"{', '.join(sorted(SAFE_FUNCTIONS))}, pi, E, oo)")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in SAFE_FUNCTIONS \
                    or node.keywords:
                raise ValueError(f"{what}: only plain calls of whitelisted functions are allowed")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                               or not isinstance(node.value, (int, float))):
            raise ValueError(f"{what}: only numeric constants are allowed")
    try:
        _check_sizes(tree.body, what)
    except RecursionError:
        raise ValueError(f"{what}: expression is nested too deeply") from None
    global_dict = {"__builtins__": {}, "Integer": sp.Integer, "Float": sp.Float,
                   "Rational": sp.Rational, "Symbol": sp.Symbol}
    global_dict.update(SAFE_FUNCTIONS)
    global_dict.update(SAFE_CONSTANTS)
    try:
        expr = parse_expr(text, local_dict=dict(symbols), global_dict=global_dict,
                          transformations=standard_transformations + (convert_xor,))
    except Exception as exc:  # sympy raises many types on malformed input
        raise ValueError(f"{what}: could not parse {text[:80]!r}: {type(exc).__name__}") from None
    if not isinstance(expr, sp.Expr):
        raise ValueError(f"{what}: not a scalar expression")
    if expr.has(sp.zoo, sp.nan):
        raise ValueError(f"{what}: {text[:80]!r} is undefined (division by zero or 0/0)")
    unknown = expr.free_symbols - set(symbols.values())
    if unknown:
        raise ValueError(f"{what}: unknown symbols {sorted(map(str, unknown))}")
    return expr


def _num(node) -> float | None:
    """The value of a literal number node (with unary signs), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _num(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value) if abs(node.value) < 1e300 else math.inf
    return None


def _check_sizes(node, what: str) -> float | None:
    """Upper bound on ``log10 |value|`` of a constant subtree (None: depends on a symbol).

    Raises ``ValueError`` when a literal, an exponent, a special-function argument or a constant
    subexpression exceeds the module limits; never evaluates anything.
    """
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, int) and len(str(abs(v))) > MAX_INT_DIGITS:
            raise ValueError(f"{what}: integer literal with more than {MAX_INT_DIGITS} digits")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{what}: non-finite number literal")
        return math.log10(abs(v)) if v else -math.inf
    if isinstance(node, ast.Name):
        return 0.5 if node.id in ("pi", "E") else None
    if isinstance(node, ast.UnaryOp):
        return _check_sizes(node.operand, what)
    if isinstance(node, ast.Call):
        name = node.func.id
        bounds = [_check_sizes(a, what) for a in node.args]
        if name in _SPECIAL:
            for b in bounds:
                if b is not None and b > math.log10(MAX_SPECIAL_ARG):
                    raise ValueError(f"{what}: argument of {name} larger than {MAX_SPECIAL_ARG}")
        if any(b is None for b in bounds):
            return None
        top = max(bounds, default=0.0)
        if name in _SPECIAL:
            out = 4.0 * MAX_SPECIAL_ARG if name != "loggamma" else 4.0
        elif name in _EXPLIKE:
            out = 0.4343 * 10.0 ** min(top, 300.0)
        else:
            out = max(top, 0.0) + 1.0
        return _bounded(out, what)
    if isinstance(node, ast.BinOp):
        a = _check_sizes(node.left, what)
        b = _check_sizes(node.right, what)
        if isinstance(node.op, (ast.Pow, ast.BitXor)):
            if b is not None and b > math.log10(MAX_EXPONENT):
                raise ValueError(f"{what}: exponent larger than {MAX_EXPONENT} in magnitude")
            if a is None or b is None:
                return None
            return _bounded(10.0 ** b * max(abs(a), 1.0), what)
        if a is None or b is None:
            return None
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return _bounded(max(a, b) + 0.31, what)
        if isinstance(node.op, ast.Div):  # |a / b|: b is a literal expression, bounded below
            den = _num(node.right)
            inv = -math.log10(abs(den)) if den else 0.0
            return _bounded(a + max(inv, b if den is None else inv, 0.0), what)
        return _bounded(a + b, what)
    return None


def _bounded(log10_bound: float, what: str) -> float:
    if not log10_bound <= MAX_LOG10:
        raise ValueError(f"{what}: a constant in the expression exceeds 10**{MAX_LOG10}")
    return log10_bound


def parse_support(text: str | tuple, what: str = "support") -> tuple[sp.Expr, sp.Expr]:
    """``"0,1"``, ``"-oo,oo"``, ``"0,oo"`` (or a 2-tuple) -> (lo, hi) with lo < hi."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    if len(parts) != 2:
        raise ValueError(f"{what}: expected LO,HI, got {text!r}")
    lo, hi = (safe_parse(str(p), {}, what) for p in parts)
    if not (lo.is_real or lo in (-sp.oo, sp.oo)) or not (hi.is_real or hi in (-sp.oo, sp.oo)) \
            or not bool(lo < hi):
        raise ValueError(f"{what}: need real LO < HI, got {text!r}")
    return lo, hi


