"""Functions in images from a registry and from a Dockerfile (tests/e2e/test_images.py sets the env first)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import skylift as modal

REGISTRY = os.environ.get("SKYLIFT_TEST_REGISTRY", "registry.invalid")
PRIVATE_REGISTRY = os.environ.get("SKYLIFT_TEST_PRIVATE_REGISTRY", "registry.invalid")  # wants a token
CONTEXT = Path(os.environ.get("SKYLIFT_TEST_DOCKER_CONTEXT", "/nonexistent"))

app = modal.App("e2e-images")
broken = modal.App("e2e-images-broken")
with_secrets = modal.App("e2e-images-secrets")

registry_image = modal.Image.from_registry(f"{REGISTRY}/skylift-test/debian:multi").pip_install("six")
dockerfile_image = modal.Image.from_dockerfile(CONTEXT / "Dockerfile", context_dir=CONTEXT,
                                               build_args={"WHO": "skylift"}).pip_install("six")


def _describe() -> dict[str, Any]:
    import subprocess

    import six

    return {"exe": sys.executable, "six": six.__name__, "greeting": os.environ.get("GREETING"), "cwd": os.getcwd(),
            "debian": open("/etc/debian_version").read().strip(), "files": sorted(os.listdir(".")),
            "built": open("/built.txt").read().strip() if os.path.exists("/built.txt") else None,
            "hello": subprocess.run(["hello", "x"], capture_output=True, text=True).stdout.strip()}


@app.function(image=registry_image)
def in_registry_image() -> dict[str, Any]:
    return _describe()


@app.function(image=dockerfile_image)
def in_dockerfile_image() -> dict[str, Any]:
    return _describe()


@broken.function(image=modal.Image.from_dockerfile(CONTEXT / "Dockerfile.user", context_dir=CONTEXT))
def never() -> None:
    pass


secret_image = (
    modal.Image.from_registry(f"{PRIVATE_REGISTRY}/skylift-test/debian:multi",
                              secret=modal.Secret.from_dict({"REGISTRY_USERNAME": "u", "REGISTRY_PASSWORD": "p"}))
    .run_commands('echo "token=$TOKEN" > /token.txt', secrets=[modal.Secret.from_dict({"TOKEN": "s3cret"})])
)


@with_secrets.function(image=secret_image)
def read_token() -> str:
    return open("/token.txt").read().strip()
