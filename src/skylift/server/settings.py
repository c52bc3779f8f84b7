"""Tunables of the control plane. Defaults follow `_protocol.api`; tests shorten them."""

from __future__ import annotations

from dataclasses import dataclass

from .._protocol import api, rpc_server


@dataclass(frozen=True)
class Settings:
    # A leased input whose container sent nothing for this long is handed out again.
    lease_seconds: float = api.LEASE_SECONDS
    app_heartbeat_timeout: float = api.APP_HEARTBEAT_TIMEOUT
    # The scaling loop also wakes at once when inputs arrive; this period only bounds how late a
    # scale-down or a min_containers refill can be.
    scaler_interval: float = 0.1
    sweep_interval: float = 0.25
    # A container told to stop gets this long to drain and run @exit before it is killed.
    stop_grace: float = 30.0
    # A container whose connection dropped (or that ran before a restart) has this long to call back.
    reconnect_grace: float = 10.0
    # A worker whose connection closed has this long to register again (it redials within 5 s)
    # before its containers are written off and their inputs run elsewhere.
    worker_grace: float = 10.0
    # Platform failures (crash, lost worker, expired lease) re-run an input without counting
    # against user retries, up to this many times (Modal's input plane uses 8).
    internal_retry_cap: int = 8
    # Containers that crash this many times in a row before becoming ready fail the pool's
    # pending inputs rather than crash-looping on them.
    startup_crash_limit: int = 3
    crash_backoff_max: float = 60.0
    output_ttl: float = api.OUTPUT_TTL_SECONDS
    # A sync call whose caller went away is cancelled after this long without a poll.
    orphan_grace: float = 30.0
    # Finished calls stay in memory this long (sync: for a late re-poll; async: then the store).
    finished_call_memory: float = 120.0
    # RPC connections before and after hello (docs/security.md): a peer gets this long to say hello;
    # at most this many may be waiting for theirs, and this many may be open in all.
    hello_timeout: float = rpc_server.HELLO_TIMEOUT
    rpc_max_unauthenticated: int = rpc_server.MAX_UNAUTHENTICATED
    rpc_max_connections: int = rpc_server.MAX_CONNECTIONS
