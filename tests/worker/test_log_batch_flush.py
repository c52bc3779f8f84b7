"""`BatchSender.flush` waits for what was added before it, not for a busy stream to fall quiet: the
worker flushes a container's last lines before it reports the exit (the end of the app's log)."""

from __future__ import annotations

import asyncio

from skylift.worker.batching import BatchSender


def test_flush_waits_for_earlier_items_only_while_others_keep_coming() -> None:
    async def scenario() -> None:
        sent: list[int] = []
        gate = asyncio.Event()

        async def send(batch: list[int]) -> None:
            await gate.wait()
            sent.extend(batch)

        sender: BatchSender[int] = BatchSender(send, max_batch=2)
        for i in range(3):
            sender.add(i)
        flushed = asyncio.ensure_future(sender.flush())
        await asyncio.sleep(0.01)
        assert not flushed.done()  # nothing sent yet
        gate.set()
        for i in range(3, 1000):  # a busy stream: the queue never empties while we wait
            sender.add(i)
            if flushed.done():
                break
            await asyncio.sleep(0)
        assert flushed.done() and sent[:3] == [0, 1, 2]
        await sender.flush()
        assert sent == list(range(len(sent))) and len(sent) >= 3

    asyncio.run(scenario())


def test_flush_returns_after_a_failed_send_and_when_idle() -> None:
    async def scenario() -> None:
        async def send(batch: list[str]) -> None:
            raise ConnectionError("control plane away")

        sender: BatchSender[str] = BatchSender(send)
        await sender.flush()  # nothing to wait for
        sender.add("lost")
        await asyncio.wait_for(sender.flush(), 1)  # given up on counts as settled

    asyncio.run(scenario())
