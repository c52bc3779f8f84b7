"""The RPC fuzzer's parts: which methods exist, what their params look like, and one case's run.

Methods come from the control plane's own routes (`ControlPlane(home).routes()`), so a method
added later is fuzzed without touching this file; parameter names come from the wire catalogue
in `skylift._protocol.api`, and values are hypothesis-generated msgpack values, real object ids
of a victim app among them, so handlers get past their first lookup.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from skylift._protocol import api
from skylift._protocol.rpc import Address, ConnectionLost, ErrorCode, RpcClient, RpcError
from skylift.server import ControlPlane

ROLES = ("admin", "container", "worker", "bad")
# Would stop the platform under test when the admin calls it; every other role must be refused it.
ADMIN_EXCLUDED = frozenset({"server.shutdown"})
CALL_TIMEOUT = 2.0  # a long poll given a long timeout is cut here (the connection is then dropped)
INT64 = 2**63 - 1


def methods() -> list[str]:
    """Every RPC method the control plane serves, read from a (never started) control plane."""
    with tempfile.TemporaryDirectory(prefix="slc-", dir="/tmp") as home:
        cp = ControlPlane(Path(home))
        try:
            return sorted(cp.routes())
        finally:
            cp.db.close()
            cp.web_store.close()
            cp.storage.close()


def catalogue_keys() -> dict[str, list[str]]:
    """method -> the param names the wire catalogue (api.py's docstring) lists for it."""
    doc = api.__doc__ or ""
    keys: dict[str, list[str]] = {}
    for match in re.finditer(r"^\s*([a-z_]+\.[a-z_]+) \{", doc, re.MULTILINE):
        depth, end = 1, match.end()
        while end < len(doc) and depth:
            depth += {"{": 1, "}": -1}.get(doc[end], 0)
            end += 1
        names = re.findall(r"([a-z_]+)\??\s*(?::|,|\}|\|)", doc[match.end() - 1:end])
        keys[match.group(1)] = list(dict.fromkeys(keys.get(match.group(1), []) + names))
    return keys


def values(ids: list[str], names: list[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-INT64, INT64), st.integers(-3, 1000),
        st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1, max_value=1.5),
        st.text(max_size=40), st.binary(max_size=64), st.sampled_from(ids or ["fc-x"]), st.sampled_from(names),
        st.sampled_from(["main", "", "process", "success", "failure", "sync", "async", "map", "unary",
                         "dict", "queue", "volume", "secret", "deployed", "ephemeral", "detached"]),
    )
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(names), st.text(max_size=10)),
                                                     inner, max_size=4)), max_leaves=12)


@st.composite
def case(draw: st.DrawFn, all_methods: list[str], keys: dict[str, list[str]], ids: list[str],
         names: list[str]) -> tuple[str, str, Any, dict[str, Any]]:
    role = draw(st.sampled_from(ROLES))
    method = draw(st.sampled_from(all_methods))
    if role == "admin" and method in ADMIN_EXCLUDED:
        method = "server.status"
    known = keys.get(method) or sorted({k for ks in keys.values() for k in ks})
    value = values(ids, names)
    # Mostly complete param sets (so handlers get past "missing field"), ids mostly real ones.
    chosen = [k for k in known if draw(st.sampled_from([True] * 5 + [False]))]
    an_id = st.one_of(st.sampled_from(ids or ["fc-x"]), value)
    params: Any = {k: draw(an_id if k.endswith("_id") else value) for k in chosen}
    params.update(draw(st.dictionaries(st.text(max_size=12), value, max_size=2)))
    # Now and then (1 in 50: sampled_from, since hypothesis favours the bounds of integers), not a map.
    if draw(st.sampled_from([False] * 49 + [True])):
        params = draw(st.one_of(st.lists(value, min_size=1, max_size=3), st.text(min_size=1),
                                st.integers(-INT64, INT64)))
    hello: dict[str, Any] = {}
    if role == "bad":
        hello = draw(st.fixed_dictionaries({
            "token": st.one_of(st.text(max_size=50), st.none(), st.integers(-INT64, INT64), st.binary(max_size=40),
                               st.sampled_from(["admin", "container", "worker"])),
            "role": st.one_of(st.sampled_from(["client", "container", "worker", "admin", ""]), st.text(max_size=8)),
            "version": st.one_of(st.just("fuzz"), st.none(), st.integers(-INT64, INT64)),
        }, optional={"task_id": st.one_of(st.sampled_from(["task", "ta-0"]), st.text(max_size=30))}))
    return role, method, params, hello


@dataclass
class Outcomes:
    cases: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    internal: list[str] = field(default_factory=list)  # "role method params -> message", the first few
    internal_count: int = 0
    unanswered: list[str] = field(default_factory=list)  # the first few calls with no answer in time
    messages: Counter[str] = field(default_factory=Counter)  # "code: message" of the refusals

    def count(self, outcome: str) -> None:
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1


class Fuzzer:
    """Speaks to one control plane as each role; runs cases and tallies their outcomes."""

    def __init__(self, url: str, tokens: dict[str, dict[str, Any]]) -> None:
        self.url = url
        self.tokens = tokens  # role -> its hello (token, role, task_id)
        self.connections: dict[str, RpcClient] = {}
        self.outcomes = Outcomes()

    async def _connection(self, role: str, hello: dict[str, Any]) -> RpcClient:
        if role == "bad":
            return await self._connect(self._bad_hello(hello))
        rpc = self.connections.get(role)
        if rpc is None or rpc.closed:
            rpc = self.connections[role] = await self._connect(self.tokens[role])
        return rpc

    async def _connect(self, hello: dict[str, Any]) -> RpcClient:
        """RpcClient.connect, with a deadline on the hello (a peer must not wait forever on one)."""
        rpc = await RpcClient.open(Address.parse(self.url))
        try:
            rpc.hello = await asyncio.wait_for(rpc.call("hello", hello), CALL_TIMEOUT)
        except BaseException:
            await rpc.close()
            raise
        return rpc

    def _bad_hello(self, hello: dict[str, Any]) -> dict[str, Any]:
        hello = dict(hello)
        if hello.get("token") in ("admin", "container", "worker"):  # a real token, maybe for the wrong role
            hello["token"] = self.tokens[str(hello["token"])]["token"]
        if hello.get("task_id") == "task":
            hello["task_id"] = self.tokens["container"]["task_id"]
        return hello

    async def run(self, role: str, method: str, params: Any, hello: dict[str, Any]) -> None:
        self.outcomes.cases += 1
        try:
            rpc = await self._connection(role, hello)
        except RpcError as exc:
            return self._answer(role, "hello", hello, exc)
        except ConnectionLost:
            return self.outcomes.count("hello: connection closed")
        except asyncio.TimeoutError:
            self.outcomes.count("hello: no answer in time")
            if len(self.outcomes.unanswered) < 5:
                self.outcomes.unanswered.append(f"{role} hello {str(hello)[:160]}")
            return None
        try:
            await asyncio.wait_for(rpc.call(method, params), CALL_TIMEOUT)
            self.outcomes.count("ok")
        except RpcError as exc:
            self._answer(role, method, params, exc)
        except asyncio.TimeoutError:
            self.outcomes.count("no answer in time (long poll)")
            if len(self.outcomes.unanswered) < 5:
                self.outcomes.unanswered.append(f"{role} {method} {str(params)[:160]}")
            await rpc.close()
        except ConnectionLost:
            self.outcomes.count("connection closed")
        finally:
            if role == "bad":
                await rpc.close()

    def _answer(self, role: str, method: str, params: Any, exc: RpcError) -> None:
        self.outcomes.count(exc.code)
        self.outcomes.messages[f"{exc.code}: {re.sub(r'[0-9a-f]{8,}', '…', exc.message)[:70]}"] += 1
        if exc.code == ErrorCode.INTERNAL:
            self.outcomes.internal_count += 1
            if len(self.outcomes.internal) < 20:
                self.outcomes.internal.append(f"{role} {method} {str(params)[:160]} -> {exc.message[:200]}")

    async def close(self) -> None:
        for rpc in self.connections.values():
            await rpc.close()
