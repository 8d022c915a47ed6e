"""Provenance that reproduces a report: command line, data file hash, git commit, versions, seeds, spec hash."""

from __future__ import annotations

import hashlib
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

LIBRARIES = ("idfree-audit", "numpy", "scipy", "torch", "scikit-learn", "pandas", "matplotlib", "seaborn",
             "sympy", "dask")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def git_commit(where: str | Path | None = None) -> str | None:
    """``HEAD`` of the checkout holding this package (``+dirty`` with uncommitted changes), or None."""
    where = Path(where or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def file_sha256(path: str | Path, limit: int = 1 << 34) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as fh:
        read = 0
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            read += len(chunk)
            if read > limit:
                return None
    return h.hexdigest()


def provenance(spec: Mapping[str, Any], meta: Mapping[str, str], seeds: Sequence[int],
               argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything needed to rerun the report, as plain JSON-ready values."""
    data = (spec.get("base") or {}).get("data", "persona")
    data_hash = None if data == "persona" else file_sha256(data)
    return {"command": shlex.join(["idfree-audit", *(sys.argv[1:] if argv is None else argv)]),
            "data": data, "data_sha256": data_hash if data != "persona" else "built-in persona generator (seeded)",
            "git_commit": git_commit(), "spec_hash": meta.get("spec_hash"), "seeds": list(seeds),
            "versions": versions()}


def provenance_text(p: Mapping[str, Any]) -> str:
    lines = [f"Command: {p['command']}", f"Data: {p['data']}  (sha256: {p['data_sha256'] or 'n/a'})",
             f"Git commit: {p['git_commit'] or 'not available (not a git checkout)'}",
             f"Spec hash: {p['spec_hash']}", f"Seeds: {p['seeds']}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in p["versions"].items())]
    return "\n".join(lines)
