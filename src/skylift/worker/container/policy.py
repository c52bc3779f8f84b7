"""What a container may do: its capabilities and the host paths it must not see or write.

Processes in a container run as uid 0 without a user namespace (images, apt and Modal programs expect
root), so protection comes from capabilities, no_new_privs, seccomp and the mount table, not from the uid:

- Capabilities: Docker's default set minus MKNOD, NET_RAW, SETFCAP, SETPCAP, SYS_CHROOT and AUDIT_WRITE
  — enough for apt/dpkg (chown, setuid to `_apt`) and for binding ports below 1024. With no_new_privs
  set, executing a binary can never raise the permitted set, whatever the bounding set holds.
- procfs: uid 0 may write most of `/proc/sys` without any capability (`kernel.core_pattern` and
  `kernel.modprobe` are classic escapes), so `/proc/sys` is bound read-only and the files Docker masks
  are masked. bubblewrap 0.8 covers `/proc/irq` and `/proc/bus` itself but, as measured here, leaves
  `/proc/sys` writable.
- sysfs: read-only, with debugfs/tracefs/securityfs/firmware hidden; `/sys/fs/cgroup` shows only the
  container's own cgroups, read-only (no `release_agent`, which lives at a hierarchy's root).
"""

from __future__ import annotations

CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_NET_BIND_SERVICE": 10,
}

# Files covered with /dev/null and directories covered with an empty read-only tmpfs (Docker's list).
MASKED_PROC_FILES = (
    "/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/latency_stats", "/proc/sysrq-trigger", "/proc/kpagecount",
    "/proc/kpageflags", "/proc/kpagecgroup", "/proc/vmallocinfo",
)
MASKED_PROC_DIRS = ("/proc/acpi", "/proc/asound", "/proc/scsi", "/proc/driver")
READ_ONLY_PROC_DIRS = ("/proc/sys", "/proc/fs")
MASKED_SYS_DIRS = (
    "/sys/firmware", "/sys/kernel/debug", "/sys/kernel/tracing", "/sys/kernel/security", "/sys/fs/bpf",
    "/sys/fs/fuse", "/sys/fs/pstore", "/sys/kernel/config", "/sys/devices/virtual/powercap",
    # a bind of the host's sysfs lists the host's interfaces, not the container's
    "/sys/class/net",
)
