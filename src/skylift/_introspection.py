"""What `App.info()`, `Function.info()` and the `logs` managers build from the control plane's answers.

`app.info`, `function.info` and `app.logs` (server/api/introspection_api.py, logs.py) answer plain
maps; this turns them into `modal.types` values.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from . import types
from ._aio import iterating
from ._client import Client

_UTC = datetime.timezone.utc


def _when(ts: float | None) -> datetime.datetime | None:
    return None if ts is None else datetime.datetime.fromtimestamp(ts, tz=_UTC)


def app_info(raw: dict[str, Any]) -> types.AppInfo:
    state = types.AppState(raw["state"])
    deployed = state is types.AppState.DEPLOYED
    lifecycle = types.AppLifecycle(
        state=state, version=raw.get("version") or None, created_at=_when(raw["created_at"]) or _when(0.0),  # type: ignore[arg-type]
        created_by="", deployed_at=_when(raw.get("deployed_at")) if deployed else None, deployed_by=None,
        stopped_at=_when(raw.get("stopped_at")), stopped_by=None)
    return types.AppInfo(app_id=raw["app_id"], description=raw.get("description") or "", lifecycle=lifecycle,
                         functions=dict(raw.get("function_ids") or {}), servers={})


def _web_info(web: dict[str, Any] | None, url: str | None) -> types.FunctionInfo.WebInfo | None:
    if not web:
        return None
    method = web.get("method") if web.get("type") == "function" else None
    return types.FunctionInfo.WebInfo(web_url=url or "", method=method,
                                      unauthenticated=not web.get("requires_proxy_auth"))


def _schedule_str(schedule: Any) -> str | None:
    """Modal's text of a schedule: `Cron('0 * * * *', UTC)` or `Period(hours=1)`."""
    if not isinstance(schedule, dict):
        return None
    if schedule.get("kind") == "cron":
        return f"Cron({schedule['cron']!r}, {schedule.get('timezone') or 'UTC'})"
    parts = [f"{k}={schedule[k]}" for k in ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
             if schedule.get(k)]
    return f"Period({', '.join(parts)})"


def function_info(definition: dict[str, Any], web_urls: dict[str, str]) -> types.FunctionInfo:
    """Modal's FunctionInfo from a skylift FunctionDefinition (fields skylift has no notion of are None/False)."""
    res = definition.get("resources") or {}
    cpu, memory = res.get("cpu"), res.get("memory")
    if isinstance(cpu, (list, tuple)):
        cpu = (float(cpu[0]), float(cpu[1])) if cpu[1] is not None else float(cpu[0])
    if isinstance(memory, (list, tuple)):
        memory = memory[1] if memory[1] is not None else memory[0]
    gpu = res.get("gpu")
    gpus = [(g["type"], int(g["count"])) for g in ([gpu, *gpu.get("fallbacks", [])] if gpu else [])]
    retries = definition.get("retries")
    concurrency = definition.get("concurrency")
    batching = definition.get("batching")
    schedule = definition.get("schedule")
    methods = definition.get("methods") or {}
    region = definition.get("region")
    cloud = definition.get("cloud")
    return types.FunctionInfo(
        cpu=float(cpu) if isinstance(cpu, (int, float)) else cpu,
        memory_mib=memory, gpus=gpus, ephemeral_disk_mib=res.get("ephemeral_disk"),
        image_info=types.FunctionInfo.ImageInfo(None, definition.get("image_id") or None),
        startup_timeout=definition.get("startup_timeout"), timeout=int(definition.get("timeout") or 0),
        max_retries=int(retries["max_retries"]) if isinstance(retries, dict) and "max_retries" in retries else None,
        nonpreemptible=False, regions=list(region) if isinstance(region, list) else ([region] if region else None),
        routing_region=None, cloud=(cloud[0] if isinstance(cloud, list) and cloud else cloud) or None,
        cluster_info=None,
        batching_info=(types.FunctionInfo.BatchingInfo(int(batching["max_batch_size"]), int(batching["wait_ms"]))
                       if batching else None),
        concurrency_info=(types.FunctionInfo.ConcurrencyInfo(concurrency.get("max_inputs"),
                                                             concurrency.get("target_inputs"))
                          if concurrency else None),
        schedule=_schedule_str(schedule),
        restrict_modal_access=False, block_network=bool(definition.get("block_network")),
        single_use_containers=bool(definition.get("single_use_containers")),
        volumes={path: types.VolumeMountInfo(None, vid, False, None)
                 for path, vid in (definition.get("volume_ids") or {}).items()},
        cloud_bucket_mounts={b["mount_path"]: types.CloudBucketMountInfo(b["bucket_name"], "s3",
                                                                         bool(b.get("read_only")),
                                                                         b.get("key_prefix") or None)
                             for b in definition.get("cloud_bucket_mounts") or []},
        secrets=list(definition.get("secret_ids") or []),
        web_info=_web_info(definition.get("web"), web_urls.get("")),
        method_names=sorted(methods) or None,
        method_details=({n: w for n, m in methods.items()
                         if (w := _web_info(m.get("web"), web_urls.get(n))) is not None} if methods else None),
    )


Target = tuple[str, str, "str | None"]  # (app id, object id of the entries, function tag to keep or None)


class LogsManager:
    """`App.logs` / `Function.logs`: `fetch`, `tail` and `stream` over the app's stored log.

    A Function's manager keeps the lines of its own containers (its tag) and the app's system lines about it."""

    def __init__(self, target: Callable[[], Awaitable[Target]]) -> None:
        self._target = target
        self._tag: str | None = None

    def _keep(self, entry: dict[str, Any], source: str | None, search_text: str) -> bool:
        if self._tag is not None and entry.get("function_tag") != self._tag:
            return False
        if source is not None and entry.get("stream") != source:
            return False
        return not search_text or search_text in entry.get("text", "")

    async def _pages(self, timeout: float) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        client = Client.from_env()
        app_id, _, self._tag = await self._target()
        seq = 0
        while True:
            got = await client.call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": timeout})
            seq = int(got["next_seq"])
            yield list(got["entries"]), bool(got.get("done")) or not got["entries"]

    def _entry(self, raw: dict[str, Any], object_id: str) -> types.LogEntry:
        return types.LogEntry(message=raw["text"], timestamp=_when(raw["ts"]) or _when(0.0),  # type: ignore[arg-type]
                              source=raw["stream"], object_id=object_id,
                              context_ids=[raw["task_id"]] if raw.get("task_id") else [])

    @iterating
    async def fetch(self, *, since: datetime.datetime, until: datetime.datetime | None = None,
                    source: types.LogSource | None = None, search_text: str = "") -> AsyncIterator[types.LogEntry]:
        """Stored lines between `since` and `until` (default: now), optionally of one source or containing text."""
        start = since.timestamp()
        end = (until or datetime.datetime.now(_UTC)).timestamp()
        _, object_id, _ = await self._target()
        async for entries, last in self._pages(0.0):
            for raw in entries:
                if start <= raw["ts"] < end and self._keep(raw, source, search_text):
                    yield self._entry(raw, object_id)
            if last:
                return

    @iterating
    async def tail(self, entries: int = 100, *, source: types.LogSource | None = None
                   ) -> AsyncIterator[types.LogEntry]:
        """The last `entries` stored lines."""
        _, object_id, _ = await self._target()
        kept: list[dict[str, Any]] = []
        async for page, last in self._pages(0.0):
            kept.extend(r for r in page if self._keep(r, source, ""))
            kept = kept[-entries:] if entries > 0 else []
            if last:
                break
        for raw in kept:
            yield self._entry(raw, object_id)

    @iterating
    async def stream(self, timeout: float | None = None) -> AsyncIterator[types.LogEntry]:
        """Every line, then new ones as they come, until the app's log ends (or `timeout` seconds pass)."""
        app_id, object_id, self._tag = await self._target()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        client = Client.from_env()
        seq = 0
        while deadline is None or loop.time() < deadline:
            wait = 30.0 if deadline is None else max(0.0, min(30.0, deadline - loop.time()))
            got = await client.call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": wait})
            seq = int(got["next_seq"])
            for raw in got["entries"]:
                if self._keep(raw, None, ""):
                    yield self._entry(raw, object_id)
            if got.get("done") and not got["entries"]:
                return


# ---- Function and FunctionCall ------------------------------------------------------------------

async def function_from_id(cls: Any, function_id: str) -> Any:
    """`Function.from_id`: a hydrated handle (its definition and web URLs known)."""
    from .exception import InvalidError

    if not isinstance(function_id, str) or not function_id.startswith("fu-"):
        raise InvalidError(f"{function_id!r} is not a function id (they start with 'fu-')")
    got = await Client.from_env().call("function.info", {"function_id": function_id})
    fn = cls(None, got["tag"])
    fn._set_hydrated(got["function_id"], got.get("definition"))
    fn._web_urls = dict(got.get("web_urls") or {})
    return fn


async def _function_record(fn: Any) -> dict[str, Any]:
    owner = fn._service or fn
    await owner._hydrate()
    got: dict[str, Any] = await Client.from_env().call("function.info", {"function_id": owner.object_id})
    return got


async def function_info_of(fn: Any) -> types.FunctionInfo:
    got = await _function_record(fn)
    return function_info(got.get("definition") or {}, dict(got.get("web_urls") or {}))


def function_logs(fn: Any) -> LogsManager:
    async def target() -> Target:
        got = await _function_record(fn)
        return str(got["app_id"]), str(got["function_id"]), str(got["tag"])

    return LogsManager(target)


async def iter_call(call: Any, start: int, end: int | None) -> AsyncIterator[Any]:
    """`FunctionCall.iter`: each index's result in order, waiting for the ones not yet done."""
    from . import _serialization
    from ._protocol import api
    from .exception import OutputExpiredError

    client = Client.from_env()
    total = int((await client.call("call.info", {"call_id": call.object_id}))["num_inputs"])
    end = total if end is None else end
    if start < 0 or end > total or start > end:
        raise ValueError(f"Invalid index range: {start} to {end} for {total} inputs")
    have: dict[int, dict[str, Any]] = {}
    nxt = start
    pause = 0.0
    while nxt < end:
        if nxt not in have:
            if pause:
                await asyncio.sleep(pause)  # later indices are done, this one isn't: don't spin
            got = await client.call("call.get_outputs", {"call_id": call.object_id, "timeout": api.MAX_POLL_SECONDS,
                                                         "clear": False, "start_index": nxt})
            for output in got["outputs"]:
                if output.get("status") == "expired":
                    raise OutputExpiredError(f"the results of call {call.object_id} have expired (kept 7 days)")
                if nxt <= output["index"] < end:
                    have[output["index"]] = output
            pause = 0.0 if nxt in have else min(1.0, pause * 2 or 0.02)
            continue
        yield _serialization.raise_for_output(have.pop(nxt), function_name=call._name)
        nxt += 1
