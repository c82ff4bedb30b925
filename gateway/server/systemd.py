"""systemd's service notification protocol (``sd_notify``): readiness, reloads, the watchdog.

The protocol is one datagram of ``KEY=VALUE`` lines sent to the unix socket named by
``$NOTIFY_SOCKET``, so it is written here with the socket module rather than a dependency (the
PyPI implementations are unmaintained, or bind libsystemd). Outside systemd (no
``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def notify(*lines: str) -> bool:
    """Send ``lines`` (``"READY=1"``, ``"STATUS=..."``) to the service manager, if there is one.

    Returns whether a message was sent. Failures are logged, never raised: a service must not
    stop serving because its manager's socket is gone.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":  # an abstract socket
        address = "\0" + address[1:]
    elif address[0] != "/":
        log.warning("NOTIFY_SOCKET=%r is not a unix socket path; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("cannot notify the service manager: %s", exc)
        return False
    return True


def reloading() -> bool:
    """Tell the manager a reload started (``READY=1`` must follow when it is over)."""
    return notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings when the manager asks for them (half its timeout)."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. our supervisor)
    try:
        return max(0.01, int(usec) / 2e6)
    except ValueError:
        return None


def forget() -> None:
    """Drop the manager's variables, so that child processes (workers) do not notify."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)
