"""Every process a program started, found and stopped, even those that left their parent.

The demo starts a control plane, the operator, the dashboard and, through podsim, trainers whose
engines run in their own process groups with worker processes of their own. Killing parents
first orphans their children, which Linux hands to init, where nobody stops them. A process that
calls `become_subreaper()` gets its orphaned descendants instead, so `stop_descendants()` can
find every one of them by walking /proc, and stop them: SIGTERM first, SIGKILL after a grace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants of this process become its children (Linux); False where unsupported."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except OSError:
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies excluded)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields and fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int | None = None) -> list[int]:
    """The live descendants of `root` (default: this process), parents before children."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _reap() -> None:
    """Collect exited children (orphans handed to a subreaper become its zombies otherwise)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def stop_descendants(grace: float = 5.0, budget: float = 12.0) -> list[int]:
    """SIGTERM every descendant, SIGKILL those left after `grace`; repeat for late orphans
    until none is left or `budget` seconds passed. Returns the pids that were signalled."""
    signalled: list[int] = []
    deadline = time.monotonic() + budget
    term_sent_at: float | None = None
    while time.monotonic() < deadline:
        _reap()
        live = descendants()
        if not live:
            break
        now = time.monotonic()
        if term_sent_at is None:
            term_sent_at = now
        fresh = [pid for pid in live if pid not in signalled]
        _signal_all(fresh, signal.SIGTERM)
        signalled.extend(fresh)
        if now - term_sent_at >= grace:
            _signal_all(live, signal.SIGKILL)
        time.sleep(0.1)
    _reap()
    return signalled


def processes_with_env(name: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment has `name=value`."""
    wanted = f"{name}={value}".encode()
    found: list[tuple[int, str]] = []
    for pid in _parents():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if wanted in environ:
            found.append((pid, cmdline.strip()))
    return found
