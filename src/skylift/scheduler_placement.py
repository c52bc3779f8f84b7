"""`modal.SchedulerPlacement`: where a function's containers may run, matched against worker labels.

    @app.function(scheduler_placement=modal.SchedulerPlacement(region="us-east", zone="us-east-1a"))

A worker started with `skylift worker --label region=us-east --label zone=us-east-1a` matches: each
given field (`region`: one or a list, `zone`, `instance_type`: one or a list) must equal the worker's
label of that name. When no connected worker matches, calls fail with an error naming the labels
the workers have. `spot` (Modal's spot/on-demand capacity) is accepted and not matched: skylift's
workers are the machines you run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .exception import InvalidError


def _names(field: str, value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) and v for v in items):
        raise InvalidError(f"SchedulerPlacement({field}={value!r}): give a non-empty string or a list of them")
    return items


class SchedulerPlacement:
    """Constrain where containers run: `region`, `zone`, `instance_type` (worker labels), `spot`."""

    def __init__(self, region: str | Sequence[str] | None = None, zone: str | None = None, spot: bool | None = None,
                 instance_type: str | Sequence[str] | None = None) -> None:
        if spot is not None and not isinstance(spot, bool):
            raise InvalidError(f"SchedulerPlacement(spot={spot!r}): spot must be True, False or None")
        self.regions = _names("region", region)
        self.zones = _names("zone", zone)
        self.instance_types = _names("instance_type", instance_type)
        self.spot = spot

    def __repr__(self) -> str:
        return (f"SchedulerPlacement(regions={self.regions}, zones={self.zones}, "
                f"instance_types={self.instance_types}, spot={self.spot})")

    def _to_wire(self) -> dict[str, Any]:
        return {"regions": self.regions, "zones": self.zones, "instance_types": self.instance_types,
                "spot": self.spot}
