"""Container networking: outbound through NAT by default, loopback only with block_network, and no
way to the host's own services or to other containers."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from skylift.worker.container import Sandbox, SandboxSpec

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(180)]

CONNECT = """
import json, socket, sys
results = {}
for host, port in json.loads(sys.argv[1]):
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect((host, port))
        results[f"{host}:{port}"] = "CONNECTED"
    except OSError as e:
        results[f"{host}:{port}"] = type(e).__name__
    finally:
        s.close()
print(json.dumps(results))
"""


def _host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " slh" not in line]


def test_block_network_leaves_only_loopback(run_sandbox):
    names = "import json, socket; print(json.dumps([n for _, n in socket.if_nameindex()]))"
    result = run_sandbox(["python3", "-c", names], block_network=True)
    assert json.loads(result.stdout) == ["lo"]
    assert result.sandbox.ip_address is None


def test_default_network_has_an_interface_a_route_and_dns(run_sandbox):
    result = run_sandbox(["python3", "-c", """
import json, socket
routes = [line.split() for line in open("/proc/net/route").read().splitlines()[1:]]
print(json.dumps({
    "interfaces": sorted(n for _, n in socket.if_nameindex()),
    "default_route": [r[0] for r in routes if r[1] == "00000000"],
    "nameservers": [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")],
}))
"""])
    seen = json.loads(result.stdout)
    assert seen["interfaces"] == ["eth0", "lo"]
    assert seen["default_route"] == ["eth0"]
    assert seen["nameservers"] and not any(ns.startswith("127.") for ns in seen["nameservers"])
    assert result.sandbox.ip_address and result.sandbox.ip_address.startswith("10.")


def test_host_services_are_unreachable(run_sandbox):
    loopback = socket.create_server(("127.0.0.1", 0))
    everywhere = socket.create_server(("0.0.0.0", 0))
    loopback.setblocking(False)
    everywhere.setblocking(False)
    try:
        lo_port, any_port = loopback.getsockname()[1], everywhere.getsockname()[1]
        targets = [("127.0.0.1", lo_port), *[(a, any_port) for a in _host_addresses()]]
        # the container's gateway is the host's end of its veth pair: the host too
        gateway = f"""
import socket, struct
gw = [line.split()[2] for line in open("/proc/net/route").read().splitlines()[1:] if line.split()[1] == "00000000"][0]
targets.append((socket.inet_ntoa(struct.pack("<I", int(gw, 16))), {any_port}))
"""
        script = CONNECT.replace("json.loads(sys.argv[1])", "targets").replace(
            "results = {}", f"results = {{}}\ntargets = {targets!r}\n{gateway}")
        result = run_sandbox(["python3", "-c", script])
        for sock in (loopback, everywhere):
            with pytest.raises(BlockingIOError):
                sock.accept()  # nothing got through
    finally:
        loopback.close()
        everywhere.close()
    seen = json.loads(result.stdout)
    assert len(seen) == len(targets) + 1, seen
    assert seen.pop(f"127.0.0.1:{lo_port}") == "ConnectionRefusedError"  # the container's own loopback
    assert set(seen.values()) == {"TimeoutError"}, seen  # dropped on the way to the host


def test_containers_cannot_reach_each_other(debian_base, tmp_path):
    server = "import socket\ns = socket.create_server(('0.0.0.0', 8000))\nprint('listening', flush=True)\ns.accept()"

    async def main() -> dict[str, str]:
        a = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["python3", "-c", server],
                                            task_id="ta-a", state_dir=tmp_path / "a"))
        try:
            assert await a.stdout.readline() == b"listening\n"
            script = CONNECT.replace("json.loads(sys.argv[1])", repr([(a.ip_address, 8000)]))
            b = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["python3", "-c", script],
                                                task_id="ta-b", state_dir=tmp_path / "b"))
            out, _ = await asyncio.gather(b.stdout.read(), b.stderr.read())
            await b.wait()
            return dict(json.loads(out))
        finally:
            await a.close()

    seen = asyncio.run(main())
    assert list(seen.values()) == ["TimeoutError"], seen


def test_isolation_rules_are_installed():
    from skylift.worker.container import network

    network.ensure_host_rules()
    table = subprocess.run(["nft", "list", "table", "inet", "skylift"], capture_output=True, text=True)
    assert table.returncode == 0
    assert 'iifname "slh*" drop' in table.stdout
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


def test_control_plane_is_reached_through_a_bound_unix_socket(run_sandbox, tmp_path):
    """The SDK inside connects to unix:///run/skylift/control.sock: no TCP route to the host needed."""
    sock_dir = tmp_path / "control"
    sock_dir.mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_dir / "control.sock"))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(100))
            conn.sendall(b"pong")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ("import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/run/skylift/control.sock')\n"
              "s.sendall(b'ping')\nprint(s.recv(100).decode())")
    try:
        result = run_sandbox(["python3", "-c", client], binds=[(sock_dir, "/run/skylift", False)], block_network=True)
    finally:
        thread.join(5)
        server.close()
    assert result.stdout == "pong\n", result.stderr
    assert received == [b"ping"]
