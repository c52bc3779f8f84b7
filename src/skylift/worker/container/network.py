"""Container networking: a network namespace per container, with outbound access through NAT.

Each container gets a veth pair: `eth0` inside with 10.213.x.2/30 and a default route, `slh<N>` on the
host with 10.213.x.1/30. Host-wide nftables rules (table `inet skylift`, `ip skylift_nat`):

- masquerade the containers' traffic to the outside world (outbound connections work);
- drop everything a container sends to the host itself (`input` from `slh*`): the host's services,
  whichever address they listen on, are unreachable — the control plane is reached through a
  bind-mounted unix socket instead; 127.0.0.1 inside a container is the container's own loopback;
- drop container-to-container traffic, IPv6 from containers, link-local addresses (cloud metadata
  services live at 169.254.169.254) and anything in `$SKYLIFT_CONTAINER_DENY` (comma-separated CIDRs);
- drop unsolicited connections into containers.

Setting up a namespace costs a few milliseconds (three `ip` runs), so a small pool is kept ready and
refilled in a background thread; a namespace is never reused after its container exits. A container
with `block_network=True` gets a fresh namespace with only `lo` (bubblewrap makes it).

Containers forked from a memory snapshot take theirs from a second pool, `fork_pool()`, whose
namespaces belong to the forks' user namespace (`userns.py`) so that the child may join one.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from .host import tool
from .userns import ForkUserns, fork_userns

SUBNET_ENV = "SKYLIFT_CONTAINER_SUBNET"
DENY_ENV = "SKYLIFT_CONTAINER_DENY"
DEFAULT_SUBNET = "10.213.0.0/16"
NETNS_DIR = Path("/run/netns")
HOST_IF_PREFIX = "slh"
NETNS_PREFIX = "sl-"


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Netns:
    name: str
    host_if: str
    host_address: str
    address: str

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)


def _run(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")


def _subnet() -> ipaddress.IPv4Network:
    net = ipaddress.ip_network(os.environ.get(SUBNET_ENV) or DEFAULT_SUBNET)
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 28:
        raise NetworkError(f"{SUBNET_ENV}={net} must be an IPv4 network of /28 or larger")
    return net


def ruleset(subnet: ipaddress.IPv4Network, deny: list[str]) -> str:
    """The nftables script that isolates containers (idempotent: it replaces skylift's tables)."""
    denied = ", ".join(["169.254.0.0/16", *deny])
    return f"""
table inet skylift {{}}
delete table inet skylift
table ip skylift_nat {{}}
delete table ip skylift_nat
table inet skylift {{
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        iifname "{HOST_IF_PREFIX}*" drop
    }}
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{HOST_IF_PREFIX}*" oifname "{HOST_IF_PREFIX}*" drop
        iifname "{HOST_IF_PREFIX}*" meta nfproto ipv6 drop
        iifname "{HOST_IF_PREFIX}*" ip daddr {{ {denied} }} drop
        oifname "{HOST_IF_PREFIX}*" ct state established,related accept
        oifname "{HOST_IF_PREFIX}*" drop
    }}
}}
table ip skylift_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} oifname != "{HOST_IF_PREFIX}*" masquerade
    }}
}}
"""


_host_ready = False
_host_lock = threading.Lock()


def ensure_host_rules() -> None:
    """Turn on IPv4 forwarding and install the isolation rules (once per process)."""
    global _host_ready
    with _host_lock:
        if _host_ready:
            return
        nft = tool("nft")
        if nft is None:
            raise NetworkError("`nft` is missing (install the Debian package nftables)")
        deny = [c.strip() for c in os.environ.get(DENY_ENV, "").split(",") if c.strip()]
        for cidr in deny:
            ipaddress.ip_network(cidr)  # a typo must fail here, not open the network
        _run([nft, "-f", "-"], ruleset(_subnet(), deny))
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        _host_ready = True


def reap_stale() -> int:
    """Delete the namespaces (and so the veth pairs) of pools whose process is gone."""
    ip = tool("ip") or "ip"
    removed = 0
    if not NETNS_DIR.is_dir():
        return 0
    for entry in NETNS_DIR.iterdir():
        parts = entry.name.split("-")
        owner_gone = len(parts) == 3 and parts[1].isdigit() and not Path(f"/proc/{parts[1]}").exists()
        if entry.name.startswith(NETNS_PREFIX) and owner_gone:
            with contextlib.suppress(NetworkError):
                _run([ip, "netns", "del", entry.name])
                removed += 1
    return removed


class NetnsPool:
    """Network namespaces with a veth pair set up, ready for the next containers."""

    def __init__(self, size: int = 4, owner: ForkUserns | None = None) -> None:
        self.size = size
        self.owner = owner  # the user namespace that owns the namespaces (None: the host's)
        self._ready: list[Netns] = []
        self._lock = threading.Lock()
        self._names = itertools.count()
        self._filling = False
        self._ip = tool("ip") or "ip"
        self._next_index = (os.getpid() * 7) % max(1, _subnet().num_addresses // 4)
        reap_stale()

    def _create(self) -> Netns:
        ensure_host_rules()
        subnet = _subnet()
        slots = subnet.num_addresses // 4
        name = f"{NETNS_PREFIX}{os.getpid()}-{next(self._names)}{'f' if self.owner else ''}"
        if self.owner is not None:
            self.owner.attach_netns(name)
        # two `ip -batch` runs (host side, then inside) instead of one process per command: ~5 ms, not ~11
        try:
            for _ in range(slots):
                with self._lock:
                    index = self._next_index
                    self._next_index = (index + 1) % slots
                if index == 0:
                    continue  # keep the network's own first address unused
                host_if = f"{HOST_IF_PREFIX}{index}"
                base = subnet.network_address + 4 * index
                host_address, address = str(base + 1), str(base + 2)
                commands = [] if (NETNS_DIR / name).exists() else [f"netns add {name}"]
                # the interface name is the lease on the address block: the kernel refuses duplicates
                commands += [f"link add {host_if} type veth peer name eth0 netns {name}",
                             f"addr add {host_address}/30 dev {host_if}", f"link set {host_if} up"]
                try:
                    _run([self._ip, "-b", "-"], "\n".join(commands) + "\n")
                except NetworkError as e:
                    if "exists" in str(e) and (NETNS_DIR / name).exists():
                        continue
                    raise
                break
            else:
                raise NetworkError(f"no free address block in {subnet}")
            with contextlib.suppress(OSError):  # drops the link-local IPv6 address: nothing to talk to
                Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("1\n")
            _run([self._ip, "-n", name, "-b", "-"],
                 f"link set lo up\naddr add {address}/30 dev eth0\nlink set eth0 up\n"
                 f"route add default via {host_address}\n")
        except BaseException:
            with contextlib.suppress(NetworkError):
                _run([self._ip, "netns", "del", name])
            raise
        return Netns(name, host_if, host_address, address)

    def try_acquire(self) -> Netns | None:
        """A ready namespace without waiting, or None when the pool is empty."""
        with self._lock:
            netns = self._ready.pop() if self._ready else None
        if netns is not None:
            self._refill_soon()
        return netns

    def acquire(self) -> Netns:
        """A ready namespace (made on the spot when the pool is empty); refills the pool behind."""
        with self._lock:
            netns = self._ready.pop() if self._ready else None
        if netns is None:
            netns = self._create()
        self._refill_soon()
        return netns

    def prefill(self) -> None:
        """Start filling the pool now (in the background), so that the first containers find one ready."""
        self._refill_soon()

    def _refill_soon(self) -> None:
        with self._lock:
            if self._filling or len(self._ready) >= self.size:
                return
            self._filling = True
        threading.Thread(target=self._refill, name="skylift-netns-pool", daemon=True).start()

    def _refill(self) -> None:
        # at the lowest priority (inherited by the `ip` processes): refilling must not slow the start
        # that triggered it, on a machine with few cores
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            while True:
                with self._lock:
                    if len(self._ready) >= self.size:
                        return
                try:
                    netns = self._create()
                except (NetworkError, OSError):  # (OSError: `ip` can't start, e.g. while the interpreter exits)
                    return
                with self._lock:
                    self._ready.append(netns)
        finally:
            with self._lock:
                self._filling = False

    def release(self, netns: Netns) -> None:
        """Delete a namespace once its container has exited (its veth pair goes with it)."""
        with contextlib.suppress(NetworkError):
            _run([self._ip, "netns", "del", netns.name])

    def close(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for netns in ready:
            self.release(netns)


_pool: NetnsPool | None = None
_pool_lock = threading.Lock()


def pool() -> NetnsPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = NetnsPool()
            atexit.register(_pool.close)
        return _pool


_fork_pool: NetnsPool | None = None


def fork_pool() -> NetnsPool:
    """Namespaces for containers forked from memory snapshots (owned by `userns.fork_userns()`)."""
    global _fork_pool
    with _pool_lock:
        if _fork_pool is None:
            _fork_pool = NetnsPool(size=2, owner=fork_userns())
            atexit.register(_fork_pool.close)
        return _fork_pool
