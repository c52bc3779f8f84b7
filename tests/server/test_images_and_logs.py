"""Image builds are relayed from the worker to waiting clients; container logs reach app.logs."""

from __future__ import annotations

import asyncio

from conftest import definition


async def test_image_build_progress_is_streamed_to_status_long_polls(platform):
    async with platform() as h:
        client = await h.client()
        image = {"layers": [{"step": "debian_slim", "args": {"python_version": "3.12"}, "files": []}]}
        built = await client.call("image.build", {"image": image})
        image_id = built["image_id"]
        assert built["status"] == "building"
        # The same definition is the same image; asking again doesn't build twice.
        assert await client.call("image.build", {"image": image}) == built
        worker = await h.worker()  # a build waits for a worker
        assert (await worker.next("build_image"))["image_id"] == image_id
        poll = asyncio.ensure_future(client.call("image.status", {"image_id": image_id, "log_offset": 0,
                                                                  "timeout": 5}))
        await asyncio.sleep(0.05)
        assert not poll.done()
        await worker.rpc.call("worker.image_progress", {"image_id": image_id, "logs": ["step 1/1"]})
        first = await poll
        assert first == {"status": "building", "logs": ["step 1/1"], "next_offset": 1}
        await worker.rpc.call("worker.image_progress", {"image_id": image_id, "logs": ["done"], "status": "ready"})
        last = await client.call("image.status", {"image_id": image_id, "log_offset": 1, "timeout": 5})
        assert last == {"status": "ready", "logs": ["done"], "next_offset": 2}
        assert (await client.call("image.build", {"image": image}))["status"] == "ready"
        await worker.no_command("build_image")
        # force_build rebuilds, and tells the worker to ignore its cache.
        assert (await client.call("image.build", {"image": image, "force_build": True}))["status"] == "building"
        forced = await worker.next("build_image")
        assert forced["image"]["layers"][0]["force_build"] is True


async def test_container_logs_reach_app_logs_long_polls(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client, definition("hello"))
        await client.call("call.run", {"function_id": ids["hello"], "input": {"args": b"x"}, "timeout": 0})
        task_id = (await worker.next("start_task"))["task"]["task_id"]
        poll = asyncio.ensure_future(client.call("app.logs", {"app_id": app_id, "after_seq": 0, "timeout": 5}))
        await asyncio.sleep(0.05)
        assert not poll.done()
        await worker.rpc.call("worker.logs", {"entries": [
            {"task_id": task_id, "stream": "stdout", "text": "hello world\n", "ts": 1.5},
            {"task_id": "ta-from-before-a-restart", "stream": "stdout", "text": "lost\n", "ts": 1.6},
        ]})
        got = await poll
        [entry] = got["entries"]
        assert entry["text"] == "hello world\n" and entry["function_tag"] == "hello" and entry["task_id"] == task_id
        assert entry["stream"] == "stdout" and entry["ts"] == 1.5
        assert got["next_seq"] == entry["seq"] and got["app_state"] == "detached"
        empty = await client.call("app.logs", {"app_id": app_id, "after_seq": got["next_seq"], "timeout": 0.05})
        assert empty["entries"] == [] and empty["next_seq"] == got["next_seq"]
        # The control plane's own lines (here: the app stopping) show up as "system".
        await client.call("app.stop", {"app_id": app_id, "environment": "main"})
        after = await client.call("app.logs", {"app_id": app_id, "after_seq": got["next_seq"], "timeout": 5})
        assert after["app_state"] == "stopped"
        assert any(e["stream"] == "system" and "stopped" in e["text"] for e in after["entries"])
