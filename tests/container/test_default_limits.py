"""Defaults that protect the host (issue 9, finding 7): CPU weight, the bounded ephemeral disk, ptrace.

Each test runs a real container (root, see conftest.py); they are few and focused because each costs
a container start.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(180)]


def probe(run_sandbox, code: str, **options):
    """Run a Python probe in a container; it prints one JSON object as its last line."""
    result = run_sandbox(["python3", "-c", "import json, os, errno\n" + code], **options)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result


FILL = '''
def fill(path):
    written = 0
    try:
        with open(path, "wb") as f:
            chunk = b"x" * (1 << 20)
            while written < (256 << 20):
                f.write(chunk)
                written += len(chunk)
                f.flush()
            os.fsync(f.fileno())
        return {"written": written, "errno": None}
    except OSError as e:
        return {"written": written, "errno": e.errno}

def fstype(path):
    best = ("", "")
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
            best = (point, right.split()[0])
    return best[1]
'''


def _loop_devices_for(path: str) -> list[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if path in line]


def _loop_devices_left(path: str, wait: float = 5.0) -> list[str]:
    """The loop devices still backed by files under `path` once detaching settled (some kernels detach an
    autoclear device from a work queue, a moment after the unmount)."""
    deadline = time.monotonic() + wait
    while (left := _loop_devices_for(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_writing_past_the_ephemeral_disk_fails_with_enospc_in_tmp_and_root(run_sandbox, tmp_path):
    got, result = probe(run_sandbox, FILL + '''
tmp = fill("/tmp/big")
os.remove("/tmp/big")
root = fill("/root/big")
st = os.statvfs("/tmp")
print(json.dumps({"tmp": tmp, "root": root, "tmp_fs": fstype("/tmp"), "size": st.f_blocks * st.f_frsize}))
''', disk_mb=64, memory_mb=512)
    assert got["tmp"]["errno"] == 28 and got["root"]["errno"] == 28  # ENOSPC, not an OOM kill
    assert got["tmp"]["written"] <= 64 << 20 and got["root"]["written"] <= 64 << 20
    assert got["tmp_fs"] == "overlay"  # /tmp is on the bounded writable layer, not a tmpfs in RAM
    assert got["size"] <= 64 << 20
    # nothing is left on the host: the file, the mount, the loop device (it detaches itself)
    state = tmp_path / "sandbox1"
    assert not (state / "disk.img").exists() and not os.path.ismount(state / "disk")
    assert _loop_devices_left(str(state)) == []
    assert not result.sandbox.stats().oom_killed


def test_the_cpu_request_is_the_containers_weight(run_sandbox):
    got, _ = probe(run_sandbox, '''
import glob
paths = glob.glob("/sys/fs/cgroup/cpu*/cpu.shares") + glob.glob("/sys/fs/cgroup/cpu.weight")
print(json.dumps({p: open(p).read().strip() for p in paths}))
''', cpu_request=0.125, cpu=2.0)
    assert got and set(got.values()) <= {"128", "5"}, got  # cgroup v1 cpu.shares / v2 cpu.weight


PTRACE = '''
import ctypes, platform, signal, time
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17

def attach(pid):
    if libc.ptrace(PTRACE_ATTACH, pid, 0, 0) == 0:
        os.waitpid(pid, 0)
        libc.ptrace(PTRACE_DETACH, pid, 0, 0)
        return "allowed"
    return errno.errorcode[ctypes.get_errno()]

def child(uid=None):
    pid = os.fork()
    if pid == 0:
        if uid is not None:
            os.setgid(uid); os.setuid(uid)
        time.sleep(60)
        os._exit(0)
    time.sleep(0.2)
    return pid

def refused(number, *args):
    return libc.syscall(number, *args) == -1 and ctypes.get_errno() == errno.EPERM

same, other = child(), child(65534)
got = {"same_uid": attach(same), "other_uid": attach(other), "init": attach(1)}
got["init_caps"] = [l.split()[1] for l in open("/proc/1/status") if l.startswith("CapPrm")][0]
if platform.machine() == "x86_64":  # kcmp, pidfd_getfd, process_madvise
    got["refused"] = [refused(312, same, same, 0, 0, 0), refused(438, 0, 0, 0), refused(440, 0, 0, 0, 0, 0)]
for pid in (same, other):
    os.kill(pid, signal.SIGKILL)
print(json.dumps(got))
'''


def test_ptrace_follows_dockers_default(run_sandbox):
    """Docker drops CAP_SYS_PTRACE and (kernels >= 4.8) lets seccomp allow ptrace: a process may trace
    one of its own uid in its container (debuggers, py-spy), nothing of another uid; the container's
    init may be traced only because it holds nothing (no capability) the tracer lacks. kcmp,
    pidfd_getfd and process_madvise are refused, as in Docker's profile without CAP_SYS_PTRACE."""
    got, _ = probe(run_sandbox, PTRACE)
    assert got["same_uid"] == "allowed" and got["other_uid"] == "EPERM"
    assert int(got["init_caps"], 16) == 0
    assert got.get("refused", [True] * 3) == [True] * 3



def test_a_dead_workers_disks_go_with_the_unmount_at_its_successors_start(tmp_path):
    """What `cleanup_stale` does for a crashed worker's scratch: unmounting frees the loop device too."""
    from skylift.worker.container.disk import EphemeralDisk
    from skylift.worker.container.overlay import unmount_all_below

    state = tmp_path / "ta-crashed" / "sandbox"
    EphemeralDisk.create(state / "disk.img", state / "disk", 64)
    assert len(_loop_devices_for(str(state))) == 1
    assert unmount_all_below(tmp_path)
    assert _loop_devices_left(str(state)) == []
