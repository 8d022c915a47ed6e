"""Progress on stderr that never touches stdout: when to show it, and a heartbeat for long steps.

* :func:`want_progress`: show progress when forced (``--progress``) or when stderr is a terminal;
  ``--json`` does not turn it off (stdout stays one JSON document, progress goes to stderr), and a
  log file or pipe gets none unless forced.
* :func:`heartbeat`: a tqdm bar redraws only when it advances, so one long step (a linkage attack
  on a 1M-row pool) looks hung; a daemon thread redraws it every ``every_s`` seconds, which
  advances its elapsed-time field (one ``\\r`` line per beat on a terminal, a line per beat when
  forced into a file).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any, Iterator

__all__ = ["want_progress", "heartbeat", "HEARTBEAT_S"]

HEARTBEAT_S = 10.0


def want_progress(force: bool = False, stream: Any = None) -> bool:
    """Whether to draw progress on ``stream`` (default ``sys.stderr``): forced, or a terminal."""
    if force:
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real stream
        return False


@contextlib.contextmanager
def heartbeat(bar: Any, every_s: float = HEARTBEAT_S) -> Iterator[Any]:
    """Redraw the tqdm ``bar`` every ``every_s`` seconds while the block runs (no-op when disabled)."""
    if getattr(bar, "disable", True) or every_s <= 0:
        yield bar
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(Exception):  # a bar closed under us: nothing to redraw
                bar.refresh()

    thread = threading.Thread(target=beat, daemon=True, name="progress-heartbeat")
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join(timeout=every_s + 1)
