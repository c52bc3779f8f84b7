"""The end of an app's log (`app.logs` `done`): only once the app is stopped and every container of
it has exited, its lines (sent before the exit) stored — so a client can drain up to it."""

from __future__ import annotations

import asyncio
import time

from conftest import definition


async def test_a_stopped_apps_log_ends_only_after_its_containers_exit(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client, definition("hello"), state="ephemeral")
        await client.call("call.run", {"function_id": ids["hello"], "input": {"args": b"x"}, "timeout": 0})
        container = await h.started_container(worker)
        running = await client.call("app.logs", {"app_id": app_id, "after_seq": 0, "timeout": 0})
        assert running["done"] is False  # a running app's log has no end
        seq = running["next_seq"]

        await client.call("app.disconnect", {"app_id": app_id, "reason": "done"})
        # Stopped, but its container is still running its @exit hook: the log hasn't ended, and a
        # long-poll waits for more rather than answering "nothing" at once.
        got = await client.call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": 5})
        assert any("was stopped" in e["text"] for e in got["entries"]) and got["app_state"] == "stopped"
        seq = got["next_seq"]
        poll = asyncio.ensure_future(client.call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": 5}))
        await asyncio.sleep(0.3)
        assert not poll.done()

        # The worker sends the container's last lines, then reports its exit.
        await worker.rpc.call("worker.logs", {"entries": [
            {"task_id": container.task_id, "stream": "stdout", "text": "bye from @exit", "ts": time.time()}]})
        got = await poll
        assert [e["text"] for e in got["entries"]] == ["bye from @exit"]
        seq = got["next_seq"]
        ending = asyncio.ensure_future(client.call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": 5}))
        await asyncio.sleep(0.05)
        assert not ending.done()
        await worker.report(container.task_id, "exited", exit_code=0)
        end = await asyncio.wait_for(ending, 2)  # answered by the report, not the poll's timeout
        assert end["done"] is True and end["entries"] == []
        # ...and stays ended.
        again = await client.call("app.logs", {"app_id": app_id, "after_seq": 0, "timeout": 5})
        assert again["done"] is True and any(e["text"] == "bye from @exit" for e in again["entries"])


async def test_a_page_short_of_the_end_is_not_the_end(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client, definition("hello"), state="ephemeral")
        await client.call("call.run", {"function_id": ids["hello"], "input": {"args": b"x"}, "timeout": 0})
        container = await h.started_container(worker)
        lines = [{"task_id": container.task_id, "stream": "stdout", "text": f"line {i}", "ts": time.time()}
                 for i in range(5)]
        await worker.rpc.call("worker.logs", {"entries": lines})
        await client.call("app.disconnect", {"app_id": app_id})
        await worker.report(container.task_id, "exited", exit_code=0)
        seq, texts = 0, []
        while True:
            got = await client.call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": 5, "limit": 2})
            texts += [e["text"] for e in got["entries"]]
            seq = got["next_seq"]
            if got["done"]:
                break
            assert len(got["entries"]) == 2
        assert [t for t in texts if t.startswith("line")] == [f"line {i}" for i in range(5)], texts
