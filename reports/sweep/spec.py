"""Sweep specifications: a TOML grid over the privacy knobs, expanded into hashed sweep points.

A spec (docs/sweep_spec.md) has fixed ``[base]`` settings passed to every point and a ``[grid]``
whose lists are expanded as a Cartesian product (``itertools.product``) in a fixed key order.
Each point's config is canonical JSON (sorted keys, no whitespace); its id is the first 16 hex
digits of ``sha256(canonical_json)``, and the spec hash is ``sha256`` of the canonical JSON of the
normalised spec.  Hence a point's identity, and its seed, depend on its own settings only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from idfree_core.errors import InputError


def _families():
    """The family registry, imported on use: it pulls in torch, and sweep workers import this
    module before their initializer runs (they must stay quick to start)."""
    import idfree_core.families as families

    return families


FAMILIES = ("beta", "gaussian", "static", "kumaraswamy")  # the built-in families, for messages
# Grid keys in expansion order, with (type, check, description).
GRID_KEYS: dict[str, tuple[type, Any, str]] = {
    "family": (str, lambda v: v in _families().family_names(), "one of the registered families " + str(list(FAMILIES))),
    "spread": (float, lambda v: math.isfinite(v) and v > 0, "a positive number"),
    "lr": (float, lambda v: math.isfinite(v) and v > 0, "a positive number"),
    "clip": (float, lambda v: math.isfinite(v) and v > 0, "a positive number"),
    "steps": (int, lambda v: v >= 1, "a positive integer"),
    "n_users": (int, lambda v: v >= 2, "an integer >= 2"),
    "seed": (int, lambda v: v >= 0, "a non-negative integer"),
    "model": (str, lambda v: v in ("compact", "minilm", "smollm2") or (v.startswith("hf:") and len(v) > 3),
              "compact, minilm, smollm2 or hf:PATH"),
}
BETA_MAX_SPREAD = math.sqrt(10 / 49)  # as idfree_core.families.BETA_MAX_SPREAD (not imported: see _families)
TOP_KEYS = ("name", "description", "base", "grid", "attacks", "model")
ATTACKS = ("clustering", "linkage", "inversion")
MAX_SPEC_BYTES = 1 << 20


def _parse_toml(text: str, source: str) -> Any:
    """``tomllib.loads`` with every failure (incl. deep nesting) as one InputError line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise InputError(f"{source}: not valid TOML (nested too deeply)") from None


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, no NaN (the input to every hash here)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def point_id(config: Mapping[str, Any]) -> str:
    """Stable id of one sweep point: 16 hex digits of sha256 of its canonical config."""
    return hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()[:16]


def _check_value(where: str, key: str, value: Any) -> Any:
    kind, ok, what = GRID_KEYS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: {key} values must be {what}, got {value!r}")
    if kind is float and isinstance(value, (int, float)):
        value = float(value)
    elif kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or not ok(value):
        raise InputError(f"{where}: {key} values must be {what}, got {value!r}")
    return value


def _point_mass(family) -> bool:
    """Whether ``family`` (a point's family; ``None``: the default) is a registered point mass."""
    fams = _families()
    return fams.get_family_spec(fams.DEFAULT_FAMILY if family is None else family).is_point_mass


def _check_list(source: str, label: str, key: str, values: Any) -> tuple:
    values = values if isinstance(values, list) else [values]
    if not values:
        raise InputError(f"{source}: grid.{label} is an empty list")
    checked = [_check_value(source, key, v) for v in values]
    return tuple(dict.fromkeys(checked))  # drop duplicates, keep order


def _check_scalar(where: str, key: str, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{where}: base.{key} must be finite, got {value!r}")
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return [_check_scalar(where, key, v) for v in value]
    raise InputError(f"{where}: base.{key} must be a string, number, boolean or a list of them, "
                     f"got {type(value).__name__}")


def _with_model(data: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    if "model" not in data:
        return data
    grid = data.get("grid")
    if isinstance(grid, Mapping) and "model" in grid:
        raise InputError(f"{source}: model is given both at the top level and in [grid]; keep one")
    rest = {k: v for k, v in data.items() if k != "model"}
    return {**rest, "grid": {**(grid if isinstance(grid, Mapping) else {}), "model": data["model"]}}


def _data_path_and_hash(path: str, root: str | Path | None, source: str) -> tuple[str, str]:
    """``base.data`` made absolute (relative to the spec's folder) and the sha256 of its content."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(root or Path.cwd()) / p
    p = p.resolve()
    if not p.exists():
        raise InputError(f"{source}: base.data {path!r}: no such file ({p})")
    digest = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        digest.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return str(p), digest.hexdigest()


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: fixed ``base`` settings, a ``grid`` of lists, and the attacks to run."""

    grid: Mapping[str, Any]
    base: Mapping[str, Any] = field(default_factory=dict)
    attacks: tuple[str, ...] = ATTACKS
    name: str = "sweep"
    description: str = ""
    data_sha256: str | None = None  # content hash of base.data when it is a file or folder

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec", root: str | Path | None = None) -> "SweepSpec":
        """Validate a parsed spec; every problem is one :class:`InputError` line naming ``source``.

        ``model = "..."`` at the top level is ``[grid] model = ["..."]``.  A relative ``base.data``
        path resolves against ``root`` (the spec file's folder; default the working directory) and
        the data's content hash enters :attr:`spec_hash`.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: a sweep spec must be a table")
        data = _with_model(data, source)
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise InputError(f"{source}: unknown key(s) {unknown}; allowed: {list(TOP_KEYS)}")
        grid_in = data.get("grid")
        if not isinstance(grid_in, Mapping) or not grid_in:
            raise InputError(f"{source}: missing or empty [grid] table")
        bad = sorted(set(grid_in) - set(GRID_KEYS))
        if bad:
            raise InputError(f"{source}: unknown grid key(s) {bad}; allowed: {list(GRID_KEYS)}")
        grid: dict[str, Any] = {}
        for key in GRID_KEYS:
            if key not in grid_in:
                continue
            if key == "spread" and isinstance(grid_in[key], Mapping):  # per-family spreads
                table = grid_in[key]
                bad_fam = sorted(set(table) - set(_families().spread_families()))
                if bad_fam or not table:
                    names = "/".join(f"'{n}'" for n in _families().spread_families())
                    raise InputError(f"{source}: grid.spread as a table maps {names} to lists, got {sorted(table)}")
                grid[key] = {fam: _check_list(source, f"spread.{fam}", key, table[fam]) for fam in sorted(table)}
                continue
            grid[key] = _check_list(source, key, key, grid_in[key])
        spreads = grid.get("spread", ())
        for fam in grid.get("family", (_families().DEFAULT_FAMILY,)):
            spec = _families().get_family_spec(fam)
            fam_spreads = spreads.get(fam, ()) if isinstance(spreads, dict) else spreads
            if spec.spread_field is not None and any(s >= spec.max_spread for s in fam_spreads):
                raise InputError(f"{source}: grid.spread must stay below {spec.max_spread:.4f} for the {fam} family "
                                 f"(the largest standard deviation of its initial marginal)")
        base_in = data.get("base", {})
        if not isinstance(base_in, Mapping):
            raise InputError(f"{source}: [base] must be a table")
        clash = sorted(set(base_in) & set(GRID_KEYS))
        if clash:
            raise InputError(f"{source}: {clash} appear in [base]; put swept keys in [grid] only")
        base = {str(k): _check_scalar(source, k, v) for k, v in sorted(base_in.items())}
        data_hash = None
        if isinstance(base.get("data"), str) and base["data"] != "persona":
            base["data"], data_hash = _data_path_and_hash(base["data"], root, source)
        attacks = data.get("attacks", list(ATTACKS))
        if not isinstance(attacks, list) or not attacks or any(a not in ATTACKS for a in attacks):
            raise InputError(f"{source}: attacks must be a non-empty list drawn from {list(ATTACKS)}")
        for key in ("name", "description"):
            if key in data and not isinstance(data[key], str):
                raise InputError(f"{source}: {key} must be a string")
        return cls(grid=grid, base=base, attacks=tuple(dict.fromkeys(attacks)),
                   name=data.get("name", "sweep"), description=data.get("description", ""), data_sha256=data_hash)

    @classmethod
    def from_toml(cls, path: str | Path) -> "SweepSpec":
        """Read and validate a TOML spec file."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: sweep spec not found")
        if p.stat().st_size > MAX_SPEC_BYTES:
            raise InputError(f"{p}: larger than {MAX_SPEC_BYTES // 1024} KiB; not a sweep spec")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{p}: not valid TOML ({' '.join(str(exc).split())})") from None
        return cls.from_dict(_parse_toml(text, str(p)), source=str(p), root=p.resolve().parent)

    @classmethod
    def from_toml_string(cls, text: str, source: str = "spec") -> "SweepSpec":
        return cls.from_dict(_parse_toml(text, source), source=source)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "description": self.description, "base": dict(self.base),
               "grid": self._grid_json(), "attacks": list(self.attacks)}
        if self.data_sha256 is not None:
            out["data_sha256"] = self.data_sha256
        return out

    def _grid_json(self) -> dict[str, Any]:
        return {k: ({f: list(s) for f, s in v.items()} if isinstance(v, dict) else list(v))
                for k, v in self.grid.items()}

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of what determines the results (not name/description)."""
        core = {"base": dict(self.base), "grid": self._grid_json(),
                "attacks": list(self.attacks)}
        if self.data_sha256 is not None:
            core["data_sha256"] = self.data_sha256
        return hashlib.sha256(canonical_json(core).encode()).hexdigest()

    def points(self) -> list[dict[str, Any]]:
        """The expanded point configs, in grid order, duplicates removed.

        ``spread`` means nothing for the static family; it is set to ``None`` there, so the
        static point appears once however many spreads the grid lists.  A per-family spread table
        gives each sampled family its own list (a family missing from it gets ``None``).
        """
        keys = [k for k in GRID_KEYS if k in self.grid]
        per_family = isinstance(self.grid.get("spread"), dict)
        lists = [(("__per_family__",) if per_family and k == "spread" else self.grid[k]) for k in keys]
        out: dict[str, dict[str, Any]] = {}
        for combo in itertools.product(*lists):
            config = {**self.base, **dict(zip(keys, combo)), "attacks": list(self.attacks)}
            spreads = [config.get("spread")]
            if per_family:
                spreads = list(self.grid["spread"].get(config.get("family"), (None,)))
            for spread in spreads:
                point = dict(config)
                if "spread" in point:
                    point["spread"] = None if _point_mass(point.get("family")) else spread
                out.setdefault(point_id(point), point)
        return list(out.values())
