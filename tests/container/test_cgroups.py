"""cgroup bookkeeping against a fake hierarchy (plain files), so both versions are checked on any host.

The real thing is exercised by the sandbox and isolation tests (v1 on hybrid hosts like CI's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skylift.worker.container.cgroups import Cgroup, CgroupLimits, join_value

pytestmark = pytest.mark.timeout(10)


def test_v2_limits_stats_and_join_files(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.subtree_control").write_text("")
    (root / "skylift").mkdir()
    (root / "skylift" / "cgroup.subtree_control").write_text("")
    cg = Cgroup("ta-1-abcd", "v2", root=root)
    cg.create(CgroupLimits(cpu=0.5, memory_mb=64, pids_max=100))
    d = root / "skylift" / "ta-1-abcd"
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (d / "pids.max").read_text() == "100"
    assert cg.join_files == [d / "cgroup.procs"]
    assert cg.visible_dirs == [(d, "")]
    (d / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (d / "memory.current").write_text("1048576\n")
    (d / "memory.peak").write_text("67108864\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (d / "pids.current").write_text("2\n")
    stats = cg.stats()
    assert (stats.cpu_seconds, stats.memory_bytes, stats.memory_peak_bytes, stats.oom_kills, stats.pids) == (
        1.5, 1 << 20, 64 << 20, 1, 2)


def test_v1_with_cpu_and_cpuacct_mounted_together(tmp_path):
    both, memory, pids = tmp_path / "cpu,cpuacct", tmp_path / "memory", tmp_path / "pids"
    mounts = {"cpu": both, "cpuacct": both, "memory": memory, "pids": pids}
    cg = Cgroup("ta-2", "v1", mounts=mounts)
    cg.create(CgroupLimits(cpu=2.0, memory_mb=128, pids_max=None))
    assert sorted(name for _, name in cg.visible_dirs) == ["cpu,cpuacct", "memory", "pids"]
    assert (both / "skylift/ta-2/cpu.cfs_quota_us").read_text() == "200000"
    assert (memory / "skylift/ta-2/memory.limit_in_bytes").read_text() == str(128 << 20)
    assert not (pids / "skylift/ta-2/pids.max").exists()
    assert all(f.name == "tasks" for f in cg.join_files) and len(cg.join_files) == 3
    (memory / "skylift/ta-2/memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (both / "skylift/ta-2/cpuacct.usage").write_text("2500000000\n")
    stats = cg.stats()
    assert stats.oom_kills == 2 and stats.cpu_seconds == 2.5


def test_join_value_moves_the_thread_on_v1_and_the_process_on_v2():
    assert join_value(Path("/sys/fs/cgroup/memory/skylift/x/tasks"), 42) == "0"
    assert join_value("/sys/fs/cgroup/skylift/x/cgroup.procs", 42) == "42"
