"""Atomic file output: write to a temporary file in the target folder, then ``os.replace``.

:func:`atomic_path` for one file; :func:`atomic_files` for a set that must change together (a run
folder): every file is staged first, then the old files are moved aside, the new ones renamed in,
and on any failure the old ones are put back, so the folder holds either the old run or the new.
``mode``: the new file's permissions (``0o600`` for ground truth); by default an existing file's
permissions are kept and a new one gets ``0666 & ~umask``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Mapping


def _stage(target: Path, suffix: str, mode: int | None) -> Path:
    """A temporary file beside ``target`` with the permissions the result should have."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    if mode is None:
        try:  # keep an existing file's permissions (e.g. a ground-truth file made 0600)
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # what a plain open() would give
    os.chmod(tmp, mode)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched, so a reader
    never sees a half-written file.
    """
    target = Path(path)
    tmp_path = _stage(target, suffix, mode)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


PRIVATE = 0o600  # owner-only: the permissions of ground-truth files (oracle, user distributions)


def write_text_atomic(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_files(paths: Mapping[str, str | os.PathLike], modes: Mapping[str, int] | None = None
                 ) -> Iterator[dict[str, Path]]:
    """Yield ``{key: temporary path}`` for every target in ``paths``; on success replace them all.

    Targets that are folders are refused before anything is written (``IsADirectoryError``).  If a
    replacement fails midway, the files already replaced are restored byte for byte.
    """
    targets = {k: Path(p) for k, p in paths.items()}
    for target in targets.values():
        if target.is_dir():
            raise IsADirectoryError(f"{target}: is a folder, cannot write a file there")
    modes = modes or {}
    temps: dict[str, Path] = {}
    try:
        for k, target in targets.items():
            temps[k] = _stage(target, target.suffix, modes.get(k))
        yield temps
        _commit(temps, targets)
    finally:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _commit(temps: dict[str, Path], targets: dict[str, Path]) -> None:
    backups: dict[str, Path] = {}
    placed: list[str] = []
    try:
        for k, target in targets.items():
            if os.path.lexists(target):
                fd, bak = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
                os.close(fd)
                os.replace(target, bak)
                backups[k] = Path(bak)
            os.replace(temps[k], target)
            placed.append(k)
    except BaseException:
        for k in placed:
            with contextlib.suppress(OSError):
                targets[k].unlink()
        for k, bak in backups.items():
            with contextlib.suppress(OSError):
                os.replace(bak, targets[k])
        raise
    for bak in backups.values():
        with contextlib.suppress(FileNotFoundError):
            bak.unlink()
