"""The gateway's web-request ids: as random and as long as `ids.new_id`'s, drawn in batches."""

from __future__ import annotations

from skylift._protocol import ids
from skylift.server.http.gateway import CALL_PREFIX, RandomIds


def test_ids_are_distinct_hex_of_new_ids_length_across_refills():
    source = RandomIds()
    drawn = [source.take(CALL_PREFIX) for _ in range(3 * RandomIds.BATCH + 7)]
    assert len(set(drawn)) == len(drawn)
    assert {len(d) for d in drawn} == {len(ids.new_id("call"))}
    assert all(d.startswith("fc-") and int(d[3:], 16) >= 0 for d in drawn)
    assert ids.kind_of(drawn[0]) == "call"
