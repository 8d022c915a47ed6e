"""No module compares family names outside the registry (issue 12): dispatch through ``FamilySpec``.

Scans the packages in ``SCANNED_PACKAGES`` (the registry itself, ``idfree_core/families``, is the one
place that names families) for comparisons with a family-name literal (``== "beta"``,
``"static" in ...``, ``in ("beta", "gaussian")``) or of a ``family`` variable (``family == x``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED_PACKAGES = ("attacks", "idfree_core")
EXEMPT = ("idfree_core/families/",)  # the registry: the one home of family names
NAMES = "beta|gaussian|static|kumaraswamy"
PATTERN = re.compile(rf"""== ?['"]({NAMES})['"]|['"]({NAMES})['"] ?(==|!=|in )|in \(['"](beta|gaussian)"""
                     r"""|family (==|!=|in)""")


def offending_lines(packages=SCANNED_PACKAGES) -> list[str]:
    out = []
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(EXEMPT):
                continue
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if PATTERN.search(line):
                    out.append(f"{rel}:{no}: {line.strip()}")
    return out


def test_no_family_name_comparisons_outside_the_registry():
    assert offending_lines() == []


@pytest.mark.parametrize("line", ['if family == "beta":', "if d.family != other:", 'if "static" in names:',
                                  'if name in ("beta", "gaussian"):', "x = 1 if 'gaussian' == f else 2"])
def test_the_pattern_catches_comparisons(line):
    assert PATTERN.search(line)


@pytest.mark.parametrize("line", ['spec = get_family_spec("beta")', "if spec.is_point_mass:",
                                  'STATIC_BASELINE = "static"'])
def test_the_pattern_allows_lookups(line):
    assert not PATTERN.search(line)
