"""Safe parsing of user expressions: an AST whitelist, then ``sympy.parse_expr``.

A density string may contain only names (the declared variable and parameters, a fixed set of
math functions and the constants pi, E, oo), numeric literals, arithmetic (``+ - * / ** ^``) and
plain calls of whitelisted functions.  Attribute access, subscripts, lambdas, comprehensions,
strings, keyword arguments and every other construct are rejected *before* anything is
evaluated, and ``parse_expr`` then runs with empty ``__builtins__`` and a namespace holding only
the whitelisted objects.  Errors are one-line ``ValueError`` messages.
"""

from __future__ import annotations

import ast
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
    except SyntaxError:
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
    unknown = expr.free_symbols - set(symbols.values())
    if unknown:
        raise ValueError(f"{what}: unknown symbols {sorted(map(str, unknown))}")
    return expr


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


