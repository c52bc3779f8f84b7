"""Isolation probes: each test tries a way out of a container and shows it blocked.

What a container must not do: see host files outside its image and volumes, see other containers'
processes, exceed `memory=` or `cpu=`, hold dangerous capabilities, gain privileges, make the
syscalls the seccomp filter refuses, or use the known escapes (cgroup v1 release_agent, writable
kernel knobs in /proc/sys, leaked host file descriptors, overwriting the runtime via /proc/PID/exe).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
import uuid
from pathlib import Path

import pytest

from skylift.worker.container import Sandbox, SandboxSpec, host

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(180)]

# Capabilities a container must never hold (numbers from linux/capability.h).
DANGEROUS = {"CAP_DAC_READ_SEARCH": 2, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_MODULE": 16,
             "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
             "CAP_SYS_BOOT": 22, "CAP_SYS_TIME": 25, "CAP_MKNOD": 27, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
             "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_PERFMON": 38, "CAP_BPF": 39}


def probe(run_sandbox, code: str, **options):
    """Run a Python probe in a container; it prints one JSON object."""
    result = run_sandbox(["python3", "-c", "import json, os, errno\n" + code], **options)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


WRITE_ATTEMPT = '''
def try_write(path, data="x"):
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return errno.errorcode[e.errno]
    try:
        os.write(fd, data.encode())
        return "WRITTEN"
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        os.close(fd)
'''


def test_host_files_outside_image_and_volumes_are_invisible(run_sandbox, tmp_path, debian_base):
    marker = f"/etc/skylift-probe-{uuid.uuid4().hex}"
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    with open(marker, "w") as f:
        f.write("host\n")
    try:
        seen = probe(run_sandbox, f"""
paths = [{marker!r}, {str(secret)!r}, {str(tmp_path)!r}, {str(debian_base)!r}, "/work", "/var/cache/skylift-test"]
print(json.dumps({{p: os.path.exists(p) for p in paths}}))
""")
    finally:
        os.unlink(marker)
    assert not any(seen.values()), seen


def test_other_containers_processes_are_invisible(debian_base, run_sandbox, tmp_path):
    token = f"{time.time() % 1000:.6f}"

    async def start_other() -> Sandbox:
        return await Sandbox.start(SandboxSpec(layers=[debian_base], command=["sleep", f"100{token}"],
                                               task_id="ta-other", state_dir=tmp_path / "other"))

    loop = asyncio.new_event_loop()
    other = loop.run_until_complete(start_other())
    try:
        seen = probe(run_sandbox, """
cmdlines = {}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            cmdlines[pid] = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
        except OSError:
            pass
print(json.dumps(cmdlines))
""")
        assert os.path.exists(f"/proc/{other.pid}")  # the other container is alive meanwhile
    finally:
        loop.run_until_complete(other.close())
        loop.close()
    assert not any(token in cmd for cmd in seen.values()), seen
    assert len(seen) <= 3  # bubblewrap's init, the probe, and a child at most
    assert "bwrap" in seen["1"]


def test_exceeding_memory_is_an_oom_kill_naming_the_limit(run_sandbox):
    result = run_sandbox(["python3", "-c", "blocks = [bytearray(16 << 20) for _ in range(32)]"], memory_mb=64)
    assert result.code == 137
    stats = result.sandbox.stats()
    assert stats.oom_killed is True
    assert stats.memory_peak_bytes <= 64 << 20
    assert "exceeded its memory limit of 64 MiB" in result.sandbox.exit_reason(result.code)


def test_within_memory_limit_is_not_an_oom(run_sandbox):
    result = run_sandbox(["python3", "-c", "x = bytearray(20 << 20)"], memory_mb=128)
    assert result.code == 0
    assert result.sandbox.stats().oom_killed is False


def test_cpu_limit_throttles_a_busy_loop(run_sandbox):
    busy = ("import time\nstart, cpu = time.monotonic(), time.process_time()\n"
            "while time.monotonic() - start < 1.2: pass\n"
            "print((time.process_time() - cpu) / (time.monotonic() - start))")
    result = run_sandbox(["python3", "-c", busy], cpu=0.25)
    ratio = float(result.stdout)
    assert ratio < 0.6, f"cpu=0.25 let a busy loop use {ratio:.2f} of a core"
    assert result.sandbox.stats().cpu_seconds < 0.6 * 1.2 + 0.2


def test_no_dangerous_capabilities_no_new_privs_and_seccomp(run_sandbox):
    status = probe(run_sandbox, """
fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({k: fields[k].strip() for k in ("CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp")}))
""")
    for field in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        held = int(status[field], 16)
        assert not [name for name, bit in DANGEROUS.items() if held & (1 << bit)], (field, status[field])
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # a filter is installed


def test_no_raw_devices_and_mknod_fails(run_sandbox):
    seen = probe(run_sandbox, """
import stat
block = [n for n in os.listdir("/dev") if stat.S_ISBLK(os.lstat("/dev/" + n).st_mode)]
try:
    os.mknod("/tmp/disk", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
    mknod = "CREATED"
except OSError as e:
    mknod = errno.errorcode[e.errno]
try:
    open("/dev/mem", "rb")
    mem = "OPENED"
except OSError as e:
    mem = errno.errorcode[e.errno]
print(json.dumps({"block": block, "mknod": mknod, "mem": mem, "dev": sorted(os.listdir("/dev"))}))
""")
    assert seen["block"] == []
    assert seen["mknod"] == "EPERM"
    assert seen["mem"] == "ENOENT"


def test_cgroup_release_agent_escape_is_blocked(run_sandbox):
    seen = probe(run_sandbox, WRITE_ATTEMPT + """
import ctypes, glob
libc = ctypes.CDLL(None, use_errno=True)
def call(rc):
    return "OK" if rc == 0 else errno.errorcode[ctypes.get_errno()]
agents = glob.glob("/sys/fs/cgroup/*/release_agent") + glob.glob("/sys/fs/cgroup/release_agent")
os.makedirs("/tmp/cg", exist_ok=True)
print(json.dumps({
    "agents": {p: try_write(p, "/evil") for p in agents},
    "notify_on_release": try_write("/sys/fs/cgroup/memory/notify_on_release", "1"),
    "mount_cgroup": call(libc.mount(b"cgroup", b"/tmp/cg", b"cgroup", 0, b"memory")),
    "mount_cgroup2": call(libc.mount(b"cgroup2", b"/tmp/cg", b"cgroup2", 0, None)),
    "unshare_user_mount_cgroup": call(libc.unshare(0x10000000 | 0x00020000 | 0x02000000)),
}))
""")
    assert all(v != "WRITTEN" for v in seen["agents"].values()), seen
    assert seen["notify_on_release"] in ("EROFS", "ENOENT")
    assert seen["mount_cgroup"] == seen["mount_cgroup2"] == "EPERM"
    assert seen["unshare_user_mount_cgroup"] == "EPERM"


def test_kernel_knobs_in_proc_are_read_only(run_sandbox):
    original = Path("/proc/sys/kernel/core_pattern").read_text()
    seen = probe(run_sandbox, WRITE_ATTEMPT + """
paths = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/vm/drop_caches",
         "/proc/sysrq-trigger", "/proc/sys/fs/binfmt_misc/register"]
print(json.dumps({p: try_write(p, "|/tmp/evil") for p in paths if os.path.exists(p)}))
""")
    assert Path("/proc/sys/kernel/core_pattern").read_text() == original
    assert seen and all(v in ("EROFS", "EACCES", "EPERM") for v in seen.values()), seen


def test_runtime_binary_cannot_be_overwritten_through_proc_exe(run_sandbox):
    seen = probe(run_sandbox, WRITE_ATTEMPT + """
fd = os.open("/proc/1/exe", os.O_PATH)
print(json.dumps({
    "exe": os.readlink("/proc/1/exe"),
    "direct": try_write("/proc/1/exe"),
    "reopened": try_write(f"/proc/self/fd/{fd}"),
}))
""")
    assert seen["direct"] != "WRITTEN" and seen["reopened"] != "WRITTEN", seen
    # and even once no container runs it, the binary sits on a read-only mount
    assert seen["exe"] == host.readonly_bwrap()
    assert os.statvfs(seen["exe"]).f_flag & os.ST_RDONLY
    with pytest.raises(OSError):
        os.open(seen["exe"], os.O_WRONLY)


def test_host_file_descriptors_do_not_leak_in(run_sandbox):
    leaky = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(leaky, True)
    try:
        seen = probe(run_sandbox, """
open_fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        open_fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
print(json.dumps(open_fds))
""")
    finally:
        os.close(leaky)
    extra = {fd: target for fd, target in seen.items() if fd not in ("0", "1", "2") and "/fd" not in target}
    assert extra == {}, seen


SYSCALLS = {  # x86_64 and aarch64 numbers of calls the filter refuses
    "x86_64": {"keyctl": 250, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
               "open_by_handle_at": 304, "setns": 308, "unshare": 272},
    "aarch64": {"keyctl": 219, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
                "open_by_handle_at": 265, "setns": 268, "unshare": 97},
}


@pytest.mark.skipif(platform.machine() not in SYSCALLS, reason="syscall numbers known for x86_64 and aarch64 only")
def test_seccomp_refuses_risky_syscalls(run_sandbox):
    numbers = SYSCALLS[platform.machine()]
    seen = probe(run_sandbox, f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
out = {{}}
for name, nr in {numbers!r}.items():
    rc = libc.syscall(nr, 0, 0, 0, 0, 0)
    out[name] = "OK" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
print(json.dumps(out))
""")
    assert seen == {name: "EPERM" for name in numbers}


def test_exec_cannot_see_or_reach_more_than_the_container(debian_base, tmp_path):
    async def main() -> str:
        sandbox = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["sleep", "60"], task_id="ta-ex",
                                                  state_dir=tmp_path / "s"))
        try:
            process = await sandbox.exec(["sh", "-c", "ls /proc | grep -c '^[0-9]'; test -e /work && echo host-visible;"
                                                      "echo x > /proc/sys/kernel/core_pattern 2>/dev/null || echo ro"])
            out, _ = await process.communicate()
            return out.decode()
        finally:
            await sandbox.close()

    lines = asyncio.run(main()).split()
    assert int(lines[0]) <= 5 and lines[1:] == ["ro"]
