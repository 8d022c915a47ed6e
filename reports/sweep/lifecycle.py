"""Sweep process hygiene: workers die with their parent, SIGTERM stops cleanly, one sweep per folder.

* :func:`worker_init` (the ``ProcessPoolExecutor`` initializer) asks Linux to SIGKILL the worker
  when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ``ctypes``) and starts a
  watchdog thread that exits the worker as soon as its parent pid changes (portable fallback,
  and a guard for the prctl caveat that the signal follows the parent *thread*).  Workers
  ignore SIGINT: Ctrl-C reaches the whole process group, and the parent alone decides to stop.
* :func:`sigterm_as_interrupt`: in the parent, SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C, so
  both take the same path: stop scheduling, terminate the workers, keep every committed point.
* :func:`folder_lock`: an exclusive ``fcntl.flock`` on ``DIR/.sweep.lock``; a second sweep on the
  same folder is refused with one line naming the holder's pid (the kernel drops the lock when the
  holder dies, so a killed sweep never leaves a stale lock).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from idfree_core.errors import InputError

PR_SET_PDEATHSIG = 1
LOCK_NAME = ".sweep.lock"


def _set_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watchdog(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(interval)


def worker_init(parent_pid: int, interval: float = 0.5) -> None:
    """Initializer of a sweep worker process (module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_pdeathsig()
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent_pid, interval), daemon=True, name="parent-watchdog").start()


def terminate_workers(pool) -> None:
    """Stop a ``ProcessPoolExecutor`` now: cancel queued points, terminate the running workers, and
    wait for the pool's manager thread to wind down."""
    procs = list(getattr(pool, "_processes", {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)
    # Let the pool's manager thread see the dead workers and close its wake-up pipe before we return.
    # Otherwise the interpreter's exit hook (concurrent.futures.process._python_exit) may write to that
    # pipe while the thread closes it, and print "OSError: Bad file descriptor" with a traceback at exit
    # (a race in CPython 3.11's _ThreadWakeup; 3.12 takes a lock there).
    if manager is not None and manager is not threading.current_thread():
        manager.join(timeout=10)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread (no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive sweep lock of ``folder``; refuse (InputError) when another sweep holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise InputError(f"{folder}: another sweep (pid {holder}) is running on this folder; wait for it "
                             "to finish or use another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
