"""A fuzzer over every RPC method, as each principal: 0 internal errors, the server's memory bounded.

Each case speaks as the admin client, a live container (its own token), a worker, or a peer with
a bad or mismatched hello, and calls one method (every route of the control plane, so new ones are
covered) with hypothesis-generated params. An answer may be a result or any clean error (refused,
invalid, not found, ...); an `internal` error or a traceback in the server log is a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chaos_apps
import pytest
from chaos_platform import running
from hypothesis import HealthCheck, Phase, given, settings
from rpc_fuzzer import Fuzzer, case, catalogue_keys, methods
from tiers import LONG, Figures, size

import skylift as modal
from skylift._client import Client, run_sync
from skylift._protocol import api

RSS_GROWTH_LIMIT_MIB = 100


def _seed_ids(client: Client) -> tuple[list[str], list[str]]:
    """Real ids and names of a victim app (never of the app whose container the fuzzer speaks as)."""
    chaos_apps.app.deploy(name="chaos-victim")
    square = modal.Function.from_name("chaos-victim", "square")
    call = square.spawn(3)
    assert call.get(timeout=60) == 9
    ids = [call.object_id, str(square.object_id)]
    app = run_sync(client.call("app.lookup", {"name": "chaos-victim", "environment": "main"}))
    ids.append(app["app_id"])
    for kind in ("dict", "queue", "volume"):
        got = run_sync(client.call("object.get", {"kind": kind, "name": f"victim-{kind}", "environment": "main",
                                                  "create_if_missing": True}))
        ids.append(got["object_id"])
    ids += ["in-0", "ta-0", "wo-0", "im-0", "fc-0", "ap-0", "fu-0"]
    return ids, ["chaos-victim", "square", "record", "victim-dict", "victim-queue", "victim-volume"]


@pytest.mark.timeout(3600 if LONG else 120)
def test_rpc_fuzz_every_method_every_role(chaos_home: Path, chaos_figures: Figures) -> None:
    examples = size(500, 10_000)
    all_methods = methods()
    keys = catalogue_keys()
    with running(chaos_home) as platform:
        chaos_apps.app.deploy(name="chaos")
        probe = modal.Function.from_name("chaos", "whoami")
        me = probe.remote()
        admin_token = (chaos_home / "token").read_text().strip()
        worker_file = chaos_home / "worker_token"  # a separate worker credential, where the platform has one
        worker_token = worker_file.read_text().strip() if worker_file.exists() else admin_token
        tokens: dict[str, dict[str, Any]] = {
            "admin": {"token": admin_token, "role": api.ROLE_CLIENT, "version": "fuzz"},
            "worker": {"token": worker_token, "role": api.ROLE_WORKER, "version": "fuzz"},
            "container": {"token": me["token"], "task_id": me["task_id"], "role": api.ROLE_CONTAINER,
                          "version": "fuzz"},
        }
        ids, names = _seed_ids(Client.from_env())
        fuzzer = Fuzzer(f"unix://{chaos_home / 'server.sock'}", tokens)
        log_start = len(platform.log())
        rss_before = platform.rss_kib()

        @settings(max_examples=examples, deadline=None, database=None, derandomize=not LONG,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(one=case(all_methods, keys, ids, names))
        def fuzz(one: tuple[str, str, Any, dict[str, Any]]) -> None:
            role, method, params, hello = one
            if role == "container" and "container" in fuzzer.connections and fuzzer.connections["container"].closed:
                _refresh_container(tokens, probe)
            run_sync(fuzzer.run(role, method, params, hello))

        try:
            fuzz()
        finally:
            run_sync(fuzzer.close())
        rss_after = platform.rss_kib()
        alive = platform.proc is not None and platform.proc.poll() is None
        tracebacks = platform.log()[log_start:].count("Traceback")
        outcomes = fuzzer.outcomes
        chaos_figures.values.update(
            methods=len(all_methods), cases=outcomes.cases, internal_errors=outcomes.internal_count,
            tracebacks_in_log=tracebacks, rss_before_mib=rss_before // 1024, rss_after_mib=rss_after // 1024,
            server_alive=alive, outcomes=outcomes.by_outcome,
            top_refusals=dict(outcomes.messages.most_common(12)), first_internal=outcomes.internal[:5],
            first_unanswered=outcomes.unanswered)
        assert alive, "the control plane died under the fuzzer"
        assert outcomes.internal_count == 0, "internal errors:\n" + "\n".join(outcomes.internal)
        assert tracebacks == 0, f"{tracebacks} traceback(s) in the server log:\n{platform.log()[log_start:][-3000:]}"
        assert rss_after - rss_before < RSS_GROWTH_LIMIT_MIB * 1024, (rss_before, rss_after)


def _refresh_container(tokens: dict[str, dict[str, Any]], probe: modal.Function) -> None:
    """The fuzzer's container was stopped (e.g. by a fuzzed call): speak as a live one."""
    me = probe.remote()
    tokens["container"].update(token=me["token"], task_id=me["task_id"])
