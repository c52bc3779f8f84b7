"""Sandbox lifecycle: output, environment, volumes, exit codes, stop, exec, stats and cleanup."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from skylift.worker.container import Sandbox, SandboxError, SandboxSpec

# The first test of a session may build the Debian base (~45 s), hence the generous timeouts.
pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(180)]


def test_python_runs_and_its_output_is_read(run_sandbox):
    script = "import sys; print('hello', sys.version_info[:2]); print('oops', file=sys.stderr)"
    result = run_sandbox(["python3", "-c", script])
    assert result.code == 0
    assert result.stdout == "hello (3, 11)\n"
    assert result.stderr == "oops\n"


def test_env_cwd_and_hostname(run_sandbox):
    result = run_sandbox(["sh", "-c", 'echo "$GREETING" "$(pwd)" "$(hostname)" "$HOME"; cat /etc/hostname'],
                         env={"GREETING": "hi"}, cwd="/usr", hostname="ta-box")
    assert result.stdout.split() == ["hi", "/usr", "ta-box", "/root", "ta-box"]


def test_exit_codes_and_signals(run_sandbox):
    assert run_sandbox(["sh", "-c", "exit 7"]).code == 7
    result = run_sandbox(["sh", "-c", "kill -9 $$"])
    assert result.code == 137
    assert result.sandbox.exit_reason(137) == "was killed by SIGKILL"
    missing = run_sandbox(["no-such-command"])
    assert missing.code != 0 and "no-such-command" in missing.stderr


def test_volumes_are_bound_read_write_and_read_only(run_sandbox, tmp_path):
    vol, ro = tmp_path / "vol", tmp_path / "ro"
    vol.mkdir()
    ro.mkdir()
    (ro / "data.txt").write_text("model weights\n")
    result = run_sandbox(
        ["sh", "-c", "cat /ro/data.txt; echo saved > /vol/out.txt; echo x > /ro/new 2>/dev/null || echo read-only"],
        binds=[(vol, "/vol", False), (ro, "/ro", True)],
    )
    assert result.code == 0, result.stderr
    assert result.stdout == "model weights\nread-only\n"
    assert (vol / "out.txt").read_text() == "saved\n"
    assert not (ro / "new").exists()


def test_writable_layer_is_private_and_discarded(run_sandbox, debian_base):
    first = run_sandbox(["sh", "-c", "echo x > /etc/motd-test; rm /etc/debian_version; echo tmp > /tmp/t; echo ok"])
    assert first.stdout == "ok\n"
    assert not (debian_base / "etc/motd-test").exists()
    assert (debian_base / "etc/debian_version").exists()
    second = run_sandbox(["sh", "-c", "ls /etc/motd-test /tmp/t 2>&1; cat /etc/debian_version"])
    assert "No such file" in second.stdout and "12." in second.stdout


def test_cleanup_unmounts_and_removes_the_upper_layer_and_cgroups(run_sandbox):
    result = run_sandbox(["sh", "-c", "head -c 1000000 /dev/zero > /big"])
    sandbox = result.sandbox
    state = sandbox.spec.state_dir
    assert not os.path.ismount(state / "rootfs")
    assert not (state / "upper").exists() and not (state / "work").exists()
    assert all(not d.exists() for d, _ in sandbox._cgroup.visible_dirs)
    with open("/proc/self/mountinfo") as f:
        assert str(state) not in f.read()


def test_stats_report_cpu_and_memory(run_sandbox):
    result = run_sandbox(["python3", "-c", "x = bytearray(50 << 20)\nsum(range(3_000_000))"])
    stats = result.sandbox.stats()
    assert result.code == 0
    assert stats.cpu_seconds > 0.01
    assert stats.memory_peak_bytes > 50 << 20
    assert stats.oom_killed is False


def test_stop_sends_sigterm_then_the_container_is_gone(debian_base, tmp_path):
    async def main() -> tuple[int, str, float]:
        script = ("import os, signal, sys, time\n"
                  "signal.signal(signal.SIGTERM, lambda *a: (os.write(1, b'got SIGTERM\\n'), sys.exit(3)))\n"
                  "os.write(1, b'ready\\n')\n"
                  "time.sleep(60)\n")
        sandbox = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["python3", "-c", script],
                                                  task_id="ta-stop", state_dir=tmp_path / "s"))
        assert await sandbox.stdout.readline() == b"ready\n"
        code = await sandbox.stop(grace=10)
        out = (await sandbox.stdout.read()).decode()
        return code, out, sandbox.stats().cpu_seconds

    code, out, _ = asyncio.run(main())
    assert code == 3
    assert out == "got SIGTERM\n"


def test_stop_kills_after_the_grace_period(debian_base, tmp_path):
    async def main() -> int:
        script = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                  "print('ready', flush=True)\ntime.sleep(60)")
        sandbox = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["python3", "-c", script],
                                                  task_id="ta-kill", state_dir=tmp_path / "s"))
        await sandbox.stdout.readline()
        return await sandbox.stop(grace=0.5)

    assert asyncio.run(main()) == 137


def test_exec_runs_in_the_same_container_with_the_same_restrictions(debian_base, tmp_path):
    async def main() -> tuple[int, str, str]:
        sandbox = await Sandbox.start(SandboxSpec(
            layers=[debian_base], command=["sh", "-c", "echo from-main > /tmp/marker; sleep 60"],
            task_id="ta-exec", state_dir=tmp_path / "s", env={"FROM_SPEC": "yes"}, memory_mb=256))
        try:
            for _ in range(100):
                probe = await sandbox.exec(["cat", "/tmp/marker"])
                if (await probe.communicate())[0]:
                    break
                await asyncio.sleep(0.05)
            process = await sandbox.exec(
                ["sh", "-c", 'cat /tmp/marker; echo "$FROM_SPEC $EXTRA"; hostname; pwd; '
                             'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; '
                             'cat /proc/1/cmdline | tr "\\0" " "'],
                env={"EXTRA": "added"}, cwd="/etc")
            out, err = await process.communicate()
            return process.returncode or 0, out.decode(), err.decode()
        finally:
            await sandbox.stop(kill=True)

    code, out, err = asyncio.run(main())
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == ["from-main", "yes added", "skylift", "/etc"]
    assert lines[4] == "CapEff:\t00000000000004fb"
    assert lines[5:7] == ["NoNewPrivs:\t1", "Seccomp:\t2"]
    assert "bwrap" in lines[7]  # pid 1 of the exec'd process's namespace is the container's init


def test_exec_exit_code_and_missing_command(debian_base, tmp_path):
    async def main() -> tuple[int | None, int | None, str]:
        sandbox = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["sleep", "60"], task_id="ta-exec2",
                                                  state_dir=tmp_path / "s"))
        try:
            failing = await sandbox.exec(["sh", "-c", "exit 5"])
            await failing.communicate()
            missing = await sandbox.exec(["no-such-tool"])
            _, err = await missing.communicate()
            return failing.returncode, missing.returncode, err.decode()
        finally:
            await sandbox.close()

    failing, missing, err = asyncio.run(main())
    assert failing == 5
    assert missing == 127 and "no-such-tool" in err


def test_a_bad_bind_fails_to_start_with_a_clear_error_and_leaves_nothing(debian_base, tmp_path):
    state = tmp_path / "s"
    spec = SandboxSpec(layers=[debian_base], command=["true"], task_id="ta-bad", state_dir=state,
                       binds=[(tmp_path / "missing", "/data", False)])
    with pytest.raises(SandboxError, match="missing"):
        asyncio.run(Sandbox.start(spec))
    assert not os.path.ismount(state / "rootfs")
    assert not (state / "upper").exists()


def test_missing_layer_is_a_clear_error(tmp_path):
    spec = SandboxSpec(layers=[tmp_path / "nope"], command=["true"], task_id="ta-x", state_dir=tmp_path / "s")
    with pytest.raises(Exception, match=r"image layer .*nope is missing"):
        asyncio.run(Sandbox.start(spec))


def test_stdin_pipe(debian_base, tmp_path):
    async def main() -> str:
        sandbox = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["tr", "a-z", "A-Z"], task_id="ta-in",
                                                  state_dir=tmp_path / "s", stdin=True))
        assert sandbox.stdin is not None
        sandbox.stdin.write(b"shout\n")
        await sandbox.stdin.drain()
        sandbox.stdin.close()
        out = await sandbox.stdout.read()
        await sandbox.wait()
        return out.decode()

    assert asyncio.run(main()) == "SHOUT\n"


def test_state_dir_paths_are_under_the_given_directory(run_sandbox, tmp_path):
    result = run_sandbox(["true"])
    assert Path(result.sandbox.spec.state_dir).is_relative_to(tmp_path)


def test_exec_with_a_pty_gets_a_controlling_terminal(debian_base, tmp_path):
    import pty

    async def main() -> tuple[int | None, str]:
        sandbox = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["sleep", "60"], task_id="ta-tty",
                                                  state_dir=tmp_path / "s"))
        master, slave = pty.openpty()
        try:
            process = await sandbox.exec(["sh", "-c", "test -t 0 && echo is-a-tty; ps -o stat= -p $$ 2>/dev/null;"
                                                      "cat /proc/self/stat | cut -d' ' -f7"],
                                         stdin=slave, stdout=slave, stderr=slave, tty=True)
            os.close(slave)
            await process.wait()
            chunks = []
            while True:
                try:
                    data = os.read(master, 1024)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            return process.returncode, b"".join(chunks).decode()
        finally:
            os.close(master)
            await sandbox.close()

    code, out = asyncio.run(main())
    lines = out.split()
    assert code == 0 and lines[0] == "is-a-tty"
    assert lines[-1] != "0"  # tty_nr in /proc/self/stat: the process has a controlling terminal
