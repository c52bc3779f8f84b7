"""The host's pip settings translated for uv and pip in image builds."""

from __future__ import annotations

from pathlib import Path

from skylift.worker import pip_config


def test_pip_conf_then_environment_then_step_arguments(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/simple\ncert = /etc/corp-ca.pem\n"
                    "find-links = /opt/wheels\ntrusted-host = mirror.example\n"
                    "[install]\nextra-index-url = https://extra.example/simple\n")
    env = {"PIP_FIND_LINKS": "/srv/wheels /srv/more", "PIP_DEFAULT_TIMEOUT": "180", "UV_CACHE_DIR": "/cache",
           "HOME": str(tmp_path), "SKYLIFT_TOKEN": "secret"}
    settings = pip_config.read_settings(env, [conf])
    assert settings.index_url == "https://mirror.example/simple"
    assert settings.extra_index_urls == ["https://extra.example/simple"]
    assert settings.find_links == ["/srv/wheels", "/srv/more"]  # the environment beats the file
    assert settings.cert == "/etc/corp-ca.pem"

    build_env = pip_config.build_env(env, settings)
    assert build_env["SSL_CERT_FILE"] == "/etc/corp-ca.pem"
    assert build_env["UV_SYSTEM_CERTS"] == "1" and "UV_NATIVE_TLS" not in build_env
    assert build_env["UV_HTTP_TIMEOUT"] == "180"
    assert build_env["UV_CACHE_DIR"] == "/cache" and build_env["PIP_FIND_LINKS"] == "/srv/wheels /srv/more"
    assert "SKYLIFT_TOKEN" not in build_env

    flags = pip_config.index_flags(settings, index_url="https://step.example/simple", find_links="/step")
    assert flags[:2] == ["--index-url", "https://step.example/simple"]
    assert flags.count("--find-links") == 3 and flags[flags.index("--find-links") + 1] == "/step"
    assert pip_config.uv_trust_flags(settings) == ["--allow-insecure-host", "mirror.example"]


def test_without_configuration_the_system_ca_bundle_is_used(tmp_path: Path) -> None:
    settings = pip_config.read_settings({}, [])
    assert pip_config.index_flags(settings) == []
    env = pip_config.build_env({}, settings)
    if Path(pip_config.SYSTEM_CA_BUNDLE).exists():
        assert env["SSL_CERT_FILE"] == pip_config.SYSTEM_CA_BUNDLE


def test_the_worker_uv_takes_the_build_environment_without_a_deprecation_warning(tmp_path: Path) -> None:
    import subprocess
    import sys

    from skylift.worker.image_steps import find_uv

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **pip_config.build_env({}, pip_config.IndexSettings())}
    proc = subprocess.run([*find_uv(sys.executable), "pip", "list", "--python", sys.executable], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "deprecated" not in proc.stderr, proc.stderr
