"""No module outside the family registry compares family names (issue 12: one home per extension point).

Dispatch on a family goes through its record (``idfree_core.families.get_family_spec(name)``:
``is_point_mass``, ``location_scale_normal``, ``param_names``, ...).  This test parses every module of
:data:`SCANNED` and fails on a comparison (``==``, ``!=``, ``in``, ``not in``, ``is``) or a pandas
``.isin([...])`` whose operand is a string literal naming a registered family (or a tuple, list or
set of them), e.g. ``family == "static"`` or ``frame["family"] != "beta"``.  Lookups such as
``TABLE.get(family)`` are not comparisons and stay allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from idfree_core.families import FAMILY_SPECS

ROOT = Path(__file__).resolve().parents[1]
# Packages scanned (idfree_core/families/ is the registry itself and is exempt).
SCANNED = ("privacy_audit", "reports", "attacks", "idfree_core")
EXEMPT = ("idfree_core/families/",)
NAMES = frozenset(FAMILY_SPECS) | {"beta", "gaussian", "static", "kumaraswamy"}


def _family_literals(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [v for elt in node.elts for v in _family_literals(elt)]
    return []


def family_comparisons(source: str) -> list[tuple[int, str]]:
    """``(line, family name)`` of every comparison of a family-name literal in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, v) for v in _family_literals(operand)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "isin"
              and node.args):
            found += [(node.lineno, v) for v in _family_literals(node.args[0])]
    return found


def _modules():
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(EXEMPT):
                yield rel, path


@pytest.mark.parametrize("package", SCANNED)
def test_no_family_name_comparisons(package):
    bad = [f"{rel}:{line}: compares the family name {name!r} (use get_family_spec(name) instead)"
           for rel, path in _modules() if rel.startswith(package + "/")
           for line, name in family_comparisons(path.read_text(encoding="utf-8"))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source, hits", [
    ('if family == "static": pass', 1),
    ('x = frame[frame["family"] != "beta"]', 1),
    ('ok = family in ("beta", "gaussian")', 2),
    ('ok = "kumaraswamy" not in names', 1),
    ('rows = frame[frame["family"].isin(["static"])]', 1),
    ('spec = get_family_spec("beta"); table.get(family)', 0),
    ('if kind == "tv": pass', 0),
])
def test_the_scanner_can_fail(source, hits):
    assert len(family_comparisons(source)) == hits


# The issue's grep, kept as a second net: also a comparison of a variable named ``family``
# (``family == x``: compare records, ``get_family_spec(a) is get_family_spec(b)``, or ask a field).
GREP = re.compile(r"""== ?['"](beta|gaussian|static|kumaraswamy)['"]|['"](beta|gaussian|static|kumaraswamy)['"] ?"""
                  r"""(==|!=|in )|in \(['"](beta|gaussian)|family (==|!=|in)""")


@pytest.mark.parametrize("package", ("attacks", "idfree_core"))
def test_the_issue_grep_is_empty(package):
    bad = [f"{rel}:{no}: {line.strip()}" for rel, path in _modules() if rel.startswith(package + "/")
           for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if GREP.search(line)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("line, hit", [('if family == "beta":', True), ("if d.family != other:", True),
                                       ('if name in ("beta", "gaussian"):', True),
                                       ('spec = get_family_spec("beta")', False),
                                       ('STATIC_BASELINE = "static"', False)])
def test_the_grep_can_fail(line, hit):
    assert bool(GREP.search(line)) is hit
