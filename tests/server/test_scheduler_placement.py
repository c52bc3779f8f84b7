"""modal.SchedulerPlacement: regions, zones and instance types matched against worker labels."""

from __future__ import annotations

import pytest

from conftest import definition
from skylift._protocol.rpc import RpcError
from skylift.server.execution.catalog import placement_labels
from skylift.server.policy.placement import Placed, Request, Unplaceable, WorkerView, place


def _worker(worker_id: str, **labels: str) -> WorkerView:
    return WorkerView(worker_id, 4, 8192, labels=labels)


def test_labels_pick_the_matching_worker_or_say_what_is_attached() -> None:
    workers = [_worker("wo-a", region="us-east"), _worker("wo-b", region="eu-west", zone="eu-west-1b")]
    request = Request(labels=(("region", ("eu-west", "ap-south")),))
    placed = place(request, workers)
    assert isinstance(placed, Placed) and placed.worker_id == "wo-b"
    assert isinstance(place(Request(labels=(("region", ("eu-west",)), ("zone", ("eu-west-1b",)))), workers), Placed)
    missing = place(Request(labels=(("zone", ("us-east-1a",)),)), workers)
    assert isinstance(missing, Unplaceable) and missing.permanent
    assert "zone in ['us-east-1a']" in missing.reason and "wo-a: region=us-east" in missing.reason
    assert isinstance(place(Request(), workers), Placed)  # no placement: any worker


def test_definition_placement_to_labels() -> None:
    spec = {"scheduler_placement": {"regions": ["us-east"], "zones": [], "instance_types": ["g5"], "spot": None}}
    assert placement_labels(spec) == (("region", ("us-east",)), ("instance_type", ("g5",)))
    assert placement_labels({}) == () and placement_labels(None) == ()


async def test_calls_fail_fast_when_no_worker_matches(platform):
    async with platform() as h:
        client = await h.client()
        await h.worker()
        placement = {"scheduler_placement": {"regions": ["mars-1"], "zones": [], "instance_types": [], "spot": None}}
        _, ids = await h.app(client, definition(placement=placement))
        with pytest.raises(RpcError) as err:
            await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"}, "timeout": 5})
        assert err.value.code == "resource_exhausted"
        assert "region in ['mars-1']" in err.value.message and "no labels" in err.value.message
