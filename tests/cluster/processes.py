"""What every test component started as a process needs: a free port, and death with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Make the child get SIGKILL when the process that started it dies.

    SIGKILL, not SIGTERM: all components would get it at once, and a
    kube-apiserver whose etcd stops under it hangs in its graceful shutdown.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
