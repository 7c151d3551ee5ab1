"""ComfyUI's port: whether it is free on every address, and which process holds it.

[`check_port`][installer.launch.ports.check_port] refuses a launch whose port is
taken, naming the holder where the OS lets us see it (Linux: `/proc/net/tcp{,6}`
and `/proc/*/fd`) and suggesting a free port nearby.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.core.errors import EnvironmentUnsupportedError
from installer.edges.environment import current_platform
from installer.launch.process import command_of
from installer.plan.launch import LaunchPlan


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    For a ComfyUI this tool starts for itself (benchmark, `tune --workflow`,
    `nodes missing`); the port is free when asked, not reserved.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PortHolder:
    """The process that listens on a port, as far as the OS lets us see it."""

    pid: int | None
    command: str | None
    user: str | None = None


def _bind_target(host: str, port: int) -> tuple[int, tuple[Any, ...]] | None:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return None
    family, _, _, _, address = info[0]
    return int(family), tuple(address)


def port_in_use(host: str, port: int) -> bool:
    """Return True when ``port`` cannot be bound on ``host`` because something holds it.

    Args:
        host: An address ComfyUI will listen on.
        port: The port.

    Returns:
        True when the address is in use. A host that is unknown or whose
        family (IPv6) this machine lacks counts as free: ComfyUI will report it.
    """
    target = _bind_target(host, port)
    if target is None:
        return False
    family, address = target
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return False
    with probe:
        if os.name != "nt":
            # Like aiohttp's server: a port in TIME_WAIT after a restart is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), 10048)
    return False


def _listening_inodes(port: int) -> list[tuple[int, int]]:
    """Return ``(inode, uid)`` of the sockets bound to ``port``, listening ones first."""
    listening: list[tuple[int, int]] = []
    other: list[tuple[int, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cells = row.split()
            if len(cells) < 10:
                continue
            try:
                local_port = int(cells[1].rsplit(":", 1)[1], 16)
                uid, inode = int(cells[7]), int(cells[9])
            except (IndexError, ValueError):
                continue
            if local_port != port or inode == 0:
                continue
            (listening if cells[3] == "0A" else other).append((inode, uid))
    return listening + other


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def port_holder(port: int) -> PortHolder | None:
    """Find the process that holds a TCP port (Linux: `/proc/net/tcp{,6}` and `/proc/*/fd`).

    Args:
        port: The port.

    Returns:
        The holder (pid and command when its file descriptors are readable,
        else only its user), or None where the OS does not say.
    """
    sockets = _listening_inodes(port)
    if not sockets:
        return None
    wanted = {f"socket:[{inode}]": uid for inode, uid in sockets}
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target in wanted:
                pid = int(entry.name)
                return PortHolder(pid, command_of(pid), _user_name(wanted[target]))
    return PortHolder(None, None, _user_name(sockets[0][1]))


def _free_port_near(port: int, host: str) -> int | None:
    for candidate in range(port + 1, min(port + 50, 65535)):
        if not port_in_use(host, candidate):
            return candidate
    return None


def check_port(plan: LaunchPlan) -> None:
    """Make sure ComfyUI's port is free on every address it will listen on.

    Args:
        plan: The launch plan.

    Raises:
        EnvironmentUnsupportedError: The port is in use; the message names the
            process holding it where the OS lets us see it.
    """
    for host in plan.listen_hosts:
        if not port_in_use(host, plan.port):
            continue
        holder = port_holder(plan.port) if current_platform() == "linux" else None
        where = f"Port {plan.port} on {host} is already in use"
        if holder is not None and holder.pid is not None:
            where += f" by pid {holder.pid} ({holder.command or 'command unknown'})"
        elif holder is not None:
            where += f" by a process of {holder.user} (its details are not visible to you)"
        free = _free_port_near(plan.port, host)
        hint = "Stop that process, or choose another port with --port"
        hint += f" (port {free} is free)." if free else "."
        raise EnvironmentUnsupportedError(where + ".", hint)
