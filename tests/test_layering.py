"""Dependencies point down the stack and never up (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("idfree_core", "privacy_audit", "attacks", "reports")
# What each package may import from the project (besides itself).
ALLOWED = {
    "idfree_core": set(),
    # idfree_core's leaf modules (errors, seeding, the family registry, optim, progress) sit below everything.
    "privacy_audit": {"idfree_core.errors", "idfree_core.seeding", "idfree_core.families", "idfree_core.jsonable",
                      "idfree_core.optim"},
    "attacks": {"privacy_audit", "idfree_core.uploads", "idfree_core.errors", "idfree_core.atomic",
                "idfree_core.seeding", "idfree_core.families", "idfree_core.jsonable", "idfree_core.optim",
                "idfree_core.progress"},
    "reports": {"idfree_core", "privacy_audit", "attacks"},
}


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def _allowed(package: str, name: str) -> bool:
    if name.split(".")[0] == package:
        return True
    for rule in ALLOWED[package]:
        if name == rule or name.startswith(rule + "."):
            return True
    # ``from idfree_core import uploads`` appears as both "idfree_core" and "idfree_core.uploads".
    return any(rule.startswith(name + ".") for rule in ALLOWED[package])


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    bad = [
        f"{f.relative_to(ROOT)} imports {name}"
        for f in files
        for name in sorted(_project_imports(f))
        if not _allowed(package, name)
    ]
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_rule_detects_violation(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from reports.cli import main\nimport attacks.base\n")
    names = _project_imports(bad)
    assert not _allowed("idfree_core", "reports.cli") and "reports.cli" in names
    assert not _allowed("privacy_audit", "attacks.base") and "attacks.base" in names
