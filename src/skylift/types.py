"""`modal.types`: the values that introspection methods return (Modal 1.6.4's dataclasses).

Only the types that skylift's methods actually return are here: `App.info()` (`AppInfo`,
`AppLifecycle`, `AppState`), `Function.info()` (`FunctionInfo`, `VolumeMountInfo`,
`CloudBucketMountInfo`), the `logs` managers (`LogEntry`), and `Volume.listdir()`
(`FileEntry`, `FileEntryType`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .volume import FileEntry, FileEntryType

LogSource = Literal["stdout", "stderr", "system"]

__all__ = ["AppInfo", "AppLifecycle", "AppState", "CloudBucketMountInfo", "FileEntry", "FileEntryType",
           "FunctionInfo", "LogEntry", "VolumeMountInfo"]


class AppState(str, enum.Enum):
    EPHEMERAL = "ephemeral"
    DETACHED = "detached"
    DEPLOYED = "deployed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    INITIALIZING = "initializing"
    DISABLED = "disabled"


@dataclass
class AppLifecycle:
    """Timestamps and attributions of an App's lifecycle (skylift has one user: `created_by` is "")."""

    state: AppState
    version: int | None
    created_at: datetime
    created_by: str
    deployed_at: datetime | None
    deployed_by: str | None
    stopped_at: datetime | None
    stopped_by: str | None


@dataclass(frozen=True)
class AppInfo:
    """An App's id, description, lifecycle and functions (name -> id)."""

    app_id: str
    description: str
    lifecycle: AppLifecycle
    functions: dict[str, str]
    servers: dict[str, str]


@dataclass(frozen=True)
class VolumeMountInfo:
    name: str | None
    volume_id: str | None
    read_only: bool
    sub_path: str | None


@dataclass(frozen=True)
class CloudBucketMountInfo:
    bucket_name: str
    bucket_type: Literal["s3", "r2", "gcp"]
    read_only: bool
    key_prefix: str | None


@dataclass(frozen=True)
class FunctionInfo:
    """Static settings of a Function, from its definition on the control plane."""

    @dataclass(frozen=True)
    class WebInfo:
        web_url: str
        method: str | None
        unauthenticated: bool

    @dataclass(frozen=True)
    class ImageInfo:
        image_name: str | None
        image_id: str | None

    @dataclass(frozen=True)
    class ClusterInfo:
        size: int
        rdma: bool
        fabric_size: int | None

    @dataclass(frozen=True)
    class BatchingInfo:
        max_batch_size: int
        wait_ms: int

    @dataclass(frozen=True)
    class ConcurrencyInfo:
        max_inputs: int | None
        target_inputs: int | None

    cpu: float | tuple[float, float] | None
    memory_mib: int | tuple[int, int] | None
    gpus: list[tuple[str, int]]
    ephemeral_disk_mib: int | None
    image_info: ImageInfo
    startup_timeout: int | None
    timeout: int
    max_retries: int | None
    nonpreemptible: bool
    regions: list[str] | None
    routing_region: str | None
    cloud: str | None
    cluster_info: ClusterInfo | None
    batching_info: BatchingInfo | None
    concurrency_info: ConcurrencyInfo | None
    schedule: str | None
    restrict_modal_access: bool
    block_network: bool
    single_use_containers: bool
    volumes: dict[str, VolumeMountInfo]
    cloud_bucket_mounts: dict[str, CloudBucketMountInfo]
    secrets: list[str]
    web_info: WebInfo | None
    method_names: list[str] | None
    method_details: dict[str, WebInfo] | None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log line of an App, Function or FunctionCall. `context_ids`: the container's task id."""

    message: str
    timestamp: datetime
    source: LogSource
    object_id: str
    context_ids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message
