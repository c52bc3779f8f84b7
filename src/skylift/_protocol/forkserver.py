"""The wire between a worker and a memory-snapshot template (a fork server), one machine only.

A template is `python -m skylift._runtime --template`: it imports the user's code, runs the
`@enter(snap=True)` hooks, then forks one container per request. The worker and the template
share one `AF_UNIX`/`SOCK_SEQPACKET` socket pair (the template's end is inherited as the fd in
`ENV_TEMPLATE_FD`): every message is one msgpack map in one packet, and a packet may carry file
descriptors (`SCM_RIGHTS`). Packets keep their boundaries, so no framing is needed.

template -> worker
    {op: "ready", pid, import_ms, snap_hooks_ms}      user code loaded; forks may be asked for
    {op: "failed", error, traceback}                   loading or a snap=True hook raised
    {op: "refused", reason}                            unsafe to fork (threads, sockets, GPU state)
    {op: "forked", task_id, pid, fork_ms}              answer to a fork request
    {op: "fork_failed", task_id, error}
    {op: "exited", pid, code}                          a forked container ended (128 + N: signal N)
    {op: "spared", spare_id, pid} + fds [the socket the spare waits on]     answer to a spare request
    {op: "spare_failed", spare_id, error}
    {op: "spare_exited", spare_id, pid, code}          a spare ended before the template heard it was activated
worker -> template
    {op: "fork", task_id, env: {k: v}, cwd, requested_at, binds?: [[host, path, read_only]],
     cgroup_procs?: [path], container?: {…}}
         + fds [stdout, stderr]: the write ends of the container's output pipes, then on the
           container runtime the fds `container.fds` names (_runtime/fork_container.py)
    {op: "spare", spare_id, container: {…}} + the fds `container.fds` names
         a pre-forked spare (container runtime): forked and set up as a container as far as it can be
         without a task (namespaces, cgroups, network, root filesystem, lock-down), then it waits
    {op: "activated", spare_id, task_id}               the worker activated the spare: a child like any other
    {op: "drop_spare", spare_id}                       the spare is killed without running anything (the
                                                       worker closed the socket it waits on, too)
worker -> a spare (on the socket from "spared", then closed; the template keeps no end of it)
    {op: "activate", task_id, env, cwd, requested_at} + fds [stdout, stderr]
         the spare becomes that task's container; EOF instead: it was dropped, and exits
    {op: "retire"}                                     fork no more; exit once every child (and spare) has

EOF on the socket means "retire" too: a template outlives its worker only as long as the
containers it forked do.
"""

from __future__ import annotations

import array
import os
import socket
from typing import Any

import msgpack

ENV_TEMPLATE_FD = "SKYLIFT_TEMPLATE_FD"
ENV_TEMPLATE_SPEC = "SKYLIFT_TEMPLATE_SPEC"  # path of a msgpack file {definition, params}
ENV_TEMPLATE_SANDBOXED = "SKYLIFT_TEMPLATE_SANDBOXED"  # "1": the template runs in a container sandbox

# Packets stay far below the socket's send buffer (~200 KiB by default); a fork request carries
# an environment, not user data.
MAX_PACKET = 1 << 20
MAX_FDS = 16


class ForkProtocolError(Exception):
    """A packet that is not a fork-server message (truncated, or not a msgpack map)."""


def pair() -> tuple[socket.socket, socket.socket]:
    """(worker end, template end); the template end is made inheritable by the caller."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def encode(message: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    if len(data) > MAX_PACKET:
        raise ForkProtocolError(f"fork-server message of {len(data)} bytes is over {MAX_PACKET}")
    return data


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one message (and fds); raises BlockingIOError on a full non-blocking socket."""
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([encode(message)], ancillary)


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the fds it carried; (None, []) at EOF. The caller owns the fds."""
    data, ancdata, flags, _ = sock.recvmsg(MAX_PACKET, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
            fds.extend(got)
    if not data and not fds:
        return None, []
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        close_fds(fds)
        raise ForkProtocolError("a fork-server message was truncated")
    try:
        message = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        close_fds(fds)
        raise ForkProtocolError(f"a fork-server message is not msgpack: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        close_fds(fds)
        raise ForkProtocolError(f"a fork-server message has no 'op': {message!r:.200}")
    return message, fds


def close_fds(fds: list[int]) -> None:
    """Close fds received with a message (ignoring ones already closed)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
