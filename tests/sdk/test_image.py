import doctest
import os
import sys
import warnings
from pathlib import Path

import cloudpickle
import msgpack
import pytest

import skylift._images.files
import skylift._images.packages
import skylift.image
from skylift import _hashing
from skylift._images.files import PatternMatcher, copy_sources
from skylift._protocol import api
from skylift.exception import DeprecationError, InvalidError
from skylift.image import Image

LOCAL = "{}.{}".format(*sys.version_info)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("MODAL_FORCE_BUILD", "SKYLIFT_FORCE_BUILD", api.ENV_TASK_ID):
        monkeypatch.delenv(name, raising=False)


def layers(image):
    return image._definition()["layers"]


def last(image):
    return layers(image)[-1]


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- bases -------------------------------------------------------------------------------


def test_debian_slim_defaults_to_local_python():
    image = Image.debian_slim()
    assert image.python_version == LOCAL
    assert layers(image) == [{"step": "debian_slim", "args": {"python_version": LOCAL}, "files": [],
                              "force_build": False}]


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13", "3.14", "3.12.4"])
def test_debian_slim_supported_versions(version):
    assert Image.debian_slim(version).python_version == version


@pytest.mark.parametrize(("version", "match"), [
    ("3.9", "unsupported Python version"), ("3.15", "unsupported Python version"),
    ("2.7", "invalid Python version"), ("3", "invalid Python version"), ("python3.11", "invalid"),
    ("3.11.", "invalid"), (3.11, "must be a string"),
])
def test_debian_slim_bad_versions(version, match):
    with pytest.raises(InvalidError, match=match):
        Image.debian_slim(version)


def test_image_cannot_be_constructed_directly():
    with pytest.raises(InvalidError, match="debian_slim"):
        Image()


def test_from_registry():
    image = Image.from_registry("ubuntu:22.04", add_python="3.12", setup_dockerfile_commands=["RUN true"])
    assert image.python_version == "3.12"
    assert last(image) == {"step": "from_registry", "force_build": False, "files": [], "args": {
        "tag": "ubuntu:22.04", "setup_dockerfile_commands": ["RUN true"], "add_python": "3.12"}}
    assert Image.from_registry("python:3.12-slim").python_version is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tag": ""}, "image reference"), ({"tag": "a b"}, "image reference"), ({"tag": 5}, "image reference"),
    ({"tag": "x", "add_python": "3.12.1"}, "3.X"), ({"tag": "x", "add_python": "3.8"}, "unsupported"),
])
def test_from_registry_bad(kwargs, match):
    with pytest.raises(InvalidError, match=match):
        Image.from_registry(**kwargs)


def test_registry_secret_is_resolved_only_on_request():
    secret = object()
    image = Image.from_registry("private/img:1", secret)
    assert "registry_secret_id" not in last(image)["args"]
    resolved = image._definition(resolve_id=lambda obj: "st-123" if obj is secret else "?")
    assert resolved["layers"][-1]["args"]["registry_secret_id"] == "st-123"
    assert image._objects() == [secret]


def test_unsupported_constructors():
    with pytest.raises(InvalidError, match="not supported yet"):
        Image.micromamba()
    with pytest.raises(InvalidError, match="not supported yet"):
        Image.from_id("im-123")


def test_copy_local_is_removed():
    base = Image.debian_slim()
    with pytest.raises(DeprecationError, match="add_local_file"):
        base.copy_local_file("a", "/a")
    with pytest.raises(DeprecationError, match="add_local_dir"):
        base.copy_local_dir("a", "/a")


# ---- immutability and force_build ------------------------------------------------------------


def test_each_step_returns_a_new_image():
    base = Image.debian_slim("3.12")
    child = base.pip_install("numpy")
    assert [layer["step"] for layer in layers(base)] == ["debian_slim"]
    assert [layer["step"] for layer in layers(child)] == ["debian_slim", "pip_install"]
    assert child.python_version == "3.12"
    assert repr(child) == "Image(debian_slim -> pip_install)"


def test_force_build_propagates_to_later_layers():
    image = Image.debian_slim("3.12").apt_install("git", force_build=True).pip_install("numpy").env({"A": "1"})
    assert [layer["force_build"] for layer in layers(image)] == [False, True, True, True]
    assert image.force_build
    assert [layer["force_build"] for layer in layers(Image.debian_slim(force_build=True).pip_install("x"))] == [
        True, True]


@pytest.mark.parametrize("var", ["MODAL_FORCE_BUILD", "SKYLIFT_FORCE_BUILD"])
def test_force_build_from_environment(monkeypatch, var):
    image = Image.debian_slim("3.12").pip_install("numpy")
    monkeypatch.setenv(var, "1")
    assert all(layer["force_build"] for layer in layers(image))
    monkeypatch.setenv(var, "0")
    assert not any(layer["force_build"] for layer in layers(image))


# ---- package steps -------------------------------------------------------------------------


def test_pip_install_layout():
    image = Image.debian_slim("3.12").pip_install("a", ["b", "c==1"], index_url="https://i", pre=True,
                                                  extra_options="--no-deps", gpu="t4", env={"X": "1", "Y": None})
    assert last(image) == {"step": "pip_install", "files": [], "force_build": False, "args": {
        "packages": ["a", "b", "c==1"], "index_url": "https://i", "extra_index_url": None, "find_links": None,
        "pre": True, "extra_options": "--no-deps", "env": {"X": "1"},
        "gpu": {"type": "T4", "count": 1, "fallbacks": []}}}


def test_empty_package_lists_add_no_layer():
    base = Image.debian_slim("3.12")
    assert base.pip_install() is base
    assert base.apt_install([]) is base
    assert base.uv_pip_install() is base
    assert base.run_commands() is base


@pytest.mark.parametrize("method", ["pip_install", "uv_pip_install"])
def test_flags_in_package_list_rejected(method):
    with pytest.raises(InvalidError, match="extra_options"):
        getattr(Image.debian_slim("3.12"), method)("numpy", "--index-url=x")


@pytest.mark.parametrize("bad", [5, ["a", 1], None])
def test_package_items_must_be_strings(bad):
    with pytest.raises(InvalidError, match="strings"):
        Image.debian_slim("3.12").pip_install(bad)


def test_bad_build_env_and_secrets():
    base = Image.debian_slim("3.12")
    with pytest.raises(InvalidError, match="env"):
        base.pip_install("a", env={"A": 1})
    with pytest.raises(InvalidError, match="secrets must be a list"):
        base.pip_install("a", secrets=object())
    with pytest.raises(InvalidError, match="gpu="):
        base.apt_install("git", gpu="V100")


def test_secrets_on_build_steps():
    s1, s2 = object(), object()
    image = Image.debian_slim("3.12").pip_install("a", secrets=[s1]).run_commands("x", secrets=[s1, s2])
    ids = {id(s1): "st-1", id(s2): "st-2"}
    got = image._definition(resolve_id=lambda obj: ids[id(obj)])["layers"]
    assert got[1]["args"]["secret_ids"] == ["st-1"]
    assert got[2]["args"]["secret_ids"] == ["st-1", "st-2"]
    assert image._objects() == [s1, s2]


def test_uv_pip_install_with_requirements(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a" / "requirements.txt", "numpy\n")
    write(tmp_path / "b" / "requirements.txt", "torch\n")
    image = Image.debian_slim("3.12").uv_pip_install("x", requirements=["a/requirements.txt", "b/requirements.txt"],
                                                     uv_version="0.5.0")
    layer = last(image)
    assert layer["args"]["requirements"] == ["0_requirements.txt", "1_requirements.txt"]
    assert layer["args"]["uv_version"] == "0.5.0"
    assert [f["path"] for f in layer["files"]] == ["0_requirements.txt", "1_requirements.txt"]
    local = image._local_files()
    assert [local[f["sha256"]].read_text() for f in layer["files"]] == ["numpy\n", "torch\n"]
    with pytest.raises(InvalidError, match="requirements must be"):
        Image.debian_slim("3.12").uv_pip_install(requirements="a/requirements.txt")


def test_requirements_file_is_read_at_definition(tmp_path):
    req = write(tmp_path / "requirements.txt", "numpy==1.0\n")
    image = Image.debian_slim("3.12").pip_install_from_requirements(str(req), find_links="https://f")
    req.write_text("changed\n")
    layer = last(image)
    assert layer["args"]["requirements"] == "requirements.txt"
    assert layer["args"]["find_links"] == "https://f"
    (entry,) = layer["files"]
    assert entry["path"] == "requirements.txt"
    assert entry["sha256"] == _hashing.sha256_bytes(b"numpy==1.0\n")
    assert image._local_files()[entry["sha256"]].read_bytes() == b"numpy==1.0\n"


def test_missing_requirements_file(tmp_path):
    with pytest.raises(InvalidError, match="can't read"):
        Image.debian_slim("3.12").pip_install_from_requirements(str(tmp_path / "nope.txt"))


def test_pyproject(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[project]\nname = "x"\ndependencies = ["a", "b>=2"]\n'
                 '[project.optional-dependencies]\ndev = ["pytest"]\ndocs = ["mkdocs"]\n')
    layer = last(Image.debian_slim("3.12").pip_install_from_pyproject(str(path), ["dev"]))
    assert layer["args"]["packages"] == ["a", "b>=2", "pytest"]
    assert layer["files"] == []
    with pytest.raises(InvalidError, match="'lint'"):
        Image.debian_slim("3.12").pip_install_from_pyproject(str(path), ["lint"])


def test_pyproject_without_dependencies(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[tool.poetry.dependencies]\npython = "^3.11"\n')
    with pytest.raises(InvalidError, match=r"\[project.dependencies\]"):
        Image.debian_slim("3.12").pip_install_from_pyproject(str(path))
    bad = write(tmp_path / "bad.toml", "[project\n")
    with pytest.raises(InvalidError, match="TOML"):
        Image.debian_slim("3.12").pip_install_from_pyproject(str(bad))


def test_apt_run_commands_env_workdir():
    image = (Image.debian_slim("3.12").apt_install("git", ["curl"]).run_commands("a", ["b"])
             .env({"K": "v"}).workdir("/app/"))
    got = layers(image)[1:]
    assert got[0]["args"] == {"packages": ["git", "curl"], "env": {}, "gpu": None}
    assert got[1]["args"] == {"commands": ["a", "b"], "env": {}, "gpu": None}
    assert got[2] == {"step": "env", "args": {"vars": {"K": "v"}}, "files": [], "force_build": False}
    assert got[3]["args"] == {"path": "/app"}


def test_env_and_workdir_validation():
    base = Image.debian_slim("3.12")
    with pytest.raises(InvalidError, match="Invalid keys: \\['A'\\]"):
        base.env({"A": 1})
    with pytest.raises(InvalidError, match="dict"):
        base.env(["A=1"])
    with pytest.raises(InvalidError, match="absolute"):
        base.workdir("app")


def test_run_commands_volumes():
    vol = object()
    image = Image.debian_slim("3.12").run_commands("ls /cache", volumes={"/cache": vol})
    assert image._definition(resolve_id=lambda obj: "vo-1")["layers"][-1]["args"]["volume_ids"] == {"/cache": "vo-1"}
    with pytest.raises(InvalidError, match="absolute"):
        Image.debian_slim("3.12").run_commands("x", volumes={"cache": vol})


# ---- run_function --------------------------------------------------------------------------

CONSTANT = 3


def build_step(path, *, text="hi"):
    Path(path).write_text(text * CONSTANT)


def test_run_function_pickles_function_and_args():
    image = Image.debian_slim("3.12").run_function(build_step, args=("/tmp/x",), kwargs={"text": "a"},
                                                   timeout=60, cpu=2, memory=512, gpu="a10g")
    layer = last(image)
    assert layer["args"]["function_name"] == "build_step"
    assert layer["args"]["timeout"] == 60
    assert (layer["args"]["cpu"], layer["args"]["memory"]) == (2.0, 512)
    assert layer["args"]["gpu"]["type"] == "A10G"  # the user's name, as Modal keeps it
    (entry,) = layer["files"]
    assert entry["path"] == "function.pkl"
    fn, args, kwargs = cloudpickle.loads(image._local_files()[entry["sha256"]].read_bytes())
    assert fn.__name__ == "build_step" and args == ("/tmp/x",) and kwargs == {"text": "a"}


def test_run_function_cache_key_is_stable_and_tracks_inputs():
    def key(**kw):
        return last(Image.debian_slim("3.12").run_function(build_step, **kw))["args"]["cache_key"]

    assert key(args=(1,)) == key(args=(1,))
    assert key(args=(1,)) != key(args=(2,))
    assert key(kwargs={"text": "a"}) != key(kwargs={"text": "b"})


def test_run_function_cache_key_tracks_globals(monkeypatch):
    before = last(Image.debian_slim("3.12").run_function(build_step))["args"]["cache_key"]
    monkeypatch.setattr(sys.modules[__name__], "CONSTANT", 4)
    after = last(Image.debian_slim("3.12").run_function(build_step))["args"]["cache_key"]
    assert before != after


def test_run_function_rejects():
    base = Image.debian_slim("3.12")
    with pytest.raises(InvalidError, match="lambda"):
        base.run_function(lambda: None)
    with pytest.raises(InvalidError, match="must be a function"):
        base.run_function("build")
    with pytest.raises(InvalidError, match="timeout"):
        base.run_function(build_step, timeout=0)
    with pytest.raises(InvalidError, match="network_file_systems"):
        base.run_function(build_step, network_file_systems={"/x": object()})


# ---- local files -----------------------------------------------------------------------------


def test_add_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = write(tmp_path / "conf" / "app.json", "{}")
    os.chmod(src, 0o640)
    image = Image.debian_slim("3.12").add_local_file("conf/app.json", "/etc/app/config.json")
    layer = last(image)
    assert layer["step"] == "add_local_file"
    assert layer["args"] == {"remote_path": "/etc/app", "copy": False}
    assert layer["files"] == [{"path": "config.json", "sha256": _hashing.sha256_bytes(b"{}"), "mode": 0o640}]
    assert image._local_files()[layer["files"][0]["sha256"]] == src.absolute()
    kept_name = last(Image.debian_slim("3.12").add_local_file(src, "/etc/", copy=True))
    assert kept_name["args"] == {"remote_path": "/etc", "copy": True}
    assert kept_name["files"][0]["path"] == "app.json"


def test_add_local_file_errors(tmp_path):
    base = Image.debian_slim("3.12")
    with pytest.raises(InvalidError, match="absolute remote_path"):
        base.add_local_file(write(tmp_path / "a"), "relative/a")
    with pytest.raises(InvalidError, match="does not exist"):
        base.add_local_file(tmp_path / "missing", "/a")
    with pytest.raises(InvalidError, match="add_local_dir"):
        base.add_local_file(tmp_path, "/a")


def test_add_local_dir_with_default_skips(tmp_path):
    for rel in ["a.txt", "sub/b.txt", "sub/deep/c.txt", "__pycache__/m.pyc", "sub/x.pyc", ".git/HEAD",
                "sub/__pycache__/y.py"]:
        write(tmp_path / "d" / rel)
    layer = last(Image.debian_slim("3.12").add_local_dir(tmp_path / "d", "/root/d/"))
    assert layer["args"] == {"remote_path": "/root/d", "copy": False}
    assert sorted(f["path"] for f in layer["files"]) == ["a.txt", "sub/b.txt", "sub/deep/c.txt"]


def test_add_local_dir_ignore_patterns_and_callable(tmp_path):
    for rel in ["a.txt", "b.csv", "sub/c.csv", "sub/keep.txt", "venv/lib.py", "data/big.bin", "data/small.bin"]:
        write(tmp_path / rel, "x" * (100 if "big" in rel else 1))
    base = Image.debian_slim("3.12")
    got = last(base.add_local_dir(tmp_path, "/d", ignore=["*.csv", "venv", "data/*", "!data/small.bin"]))
    assert sorted(f["path"] for f in got["files"]) == ["a.txt", "data/small.bin", "sub/c.csv", "sub/keep.txt"]
    got = last(base.add_local_dir(tmp_path, "/d", ignore=["**/*.csv"]))
    assert "sub/c.csv" not in [f["path"] for f in got["files"]]
    got = last(base.add_local_dir(tmp_path, "/d", ignore=lambda p: p.suffix != ".txt"))
    assert sorted(f["path"] for f in got["files"]) == ["a.txt", "sub/keep.txt"]
    with pytest.raises(InvalidError, match="ignore="):
        base.add_local_dir(tmp_path, "/d", ignore="*.csv")


def test_add_local_dir_errors(tmp_path):
    base = Image.debian_slim("3.12")
    with pytest.raises(InvalidError, match="does not exist"):
        base.add_local_dir(tmp_path / "nope", "/d")
    with pytest.raises(InvalidError, match="add_local_file"):
        base.add_local_dir(write(tmp_path / "f"), "/d")
    with pytest.raises(InvalidError, match="absolute remote_path"):
        base.add_local_dir(tmp_path, "d")


@pytest.fixture
def pkg_root(tmp_path, monkeypatch):
    root = tmp_path / "src"
    write(root / "skyl_pkg" / "__init__.py", "raise RuntimeError('must not be imported')\n")
    write(root / "skyl_pkg" / "core.py", "X = 1\n")
    write(root / "skyl_pkg" / "data.json", "{}")
    write(root / "skyl_pkg" / ".secret" / "k.py", "")
    write(root / "skyl_pkg" / "__pycache__" / "core.cpython-311.pyc", "")
    write(root / "skyl_pkg" / "sub" / "__init__.py", "raise RuntimeError('must not be imported')\n")
    write(root / "skyl_pkg" / "sub" / "leaf.py", "")
    write(root / "skyl_mod.py", "raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith(("skyl_pkg", "skyl_mod"))]:
        del sys.modules[name]


def test_add_local_python_source_package_without_importing(pkg_root):
    image = Image.debian_slim("3.12").add_local_python_source("skyl_pkg", "skyl_mod")
    layer = last(image)
    assert layer["args"] == {"remote_path": "/root", "copy": False, "modules": ["skyl_pkg", "skyl_mod"]}
    assert sorted(f["path"] for f in layer["files"]) == [
        "skyl_mod.py", "skyl_pkg/__init__.py", "skyl_pkg/core.py", "skyl_pkg/sub/__init__.py",
        "skyl_pkg/sub/leaf.py"]
    assert "skyl_pkg" not in sys.modules and "skyl_mod" not in sys.modules


def test_add_local_python_source_dotted_and_ignore(pkg_root):
    layer = last(Image.debian_slim("3.12").add_local_python_source("skyl_pkg.sub"))
    assert sorted(f["path"] for f in layer["files"]) == ["skyl_pkg/sub/__init__.py", "skyl_pkg/sub/leaf.py"]
    layer = last(Image.debian_slim("3.12").add_local_python_source("skyl_pkg.core"))
    assert [f["path"] for f in layer["files"]] == ["skyl_pkg/core.py"]
    layer = last(Image.debian_slim("3.12").add_local_python_source("skyl_pkg", ignore=["sub"]))
    assert sorted(f["path"] for f in layer["files"]) == ["skyl_pkg/__init__.py", "skyl_pkg/core.py",
                                                         "skyl_pkg/data.json"]
    assert "skyl_pkg" not in sys.modules


def test_add_local_python_source_unknown(pkg_root):
    with pytest.raises(InvalidError, match="no_such_module_xyz"):
        Image.debian_slim("3.12").add_local_python_source("no_such_module_xyz")
    with pytest.raises(InvalidError, match=r"skyl_pkg\.nothing"):
        Image.debian_slim("3.12").add_local_python_source("skyl_pkg.nothing")
    with pytest.raises(InvalidError, match="no local module"):
        Image.debian_slim("3.12").add_local_python_source("sys")
    with pytest.raises(InvalidError, match="strings"):
        Image.debian_slim("3.12").add_local_python_source(3)


def test_copy_false_layers_become_start_mounts(tmp_path):
    write(tmp_path / "d" / "a.txt", "a")
    f = write(tmp_path / "f.txt", "f")
    image = (Image.debian_slim("3.12").pip_install("x")
             .add_local_dir(tmp_path / "d", "/data", copy=True).run_commands("cat /data/a.txt")
             .add_local_dir(tmp_path / "d", "/mnt/d").add_local_file(f, "/mnt/f.txt"))
    assert [layer["step"] for layer in image._build_layers()] == [
        "debian_slim", "pip_install", "add_local_dir", "run_commands"]
    assert [layer["args"].get("copy") for layer in layers(image)][-2:] == [False, False]
    sha_a, sha_f = _hashing.sha256_bytes(b"a"), _hashing.sha256_bytes(b"f")
    assert image._start_mounts() == [
        {"remote_path": "/mnt/d", "files": [{"path": "a.txt", "sha256": sha_a, "mode": 0o644}]},
        {"remote_path": "/mnt", "files": [{"path": "f.txt", "sha256": sha_f, "mode": 0o644}]}]
    local = image._local_files()
    assert local[sha_a].read_bytes() == b"a" and local[sha_f].read_bytes() == b"f"


def test_build_step_after_copy_false_is_an_error(tmp_path):
    image = Image.debian_slim("3.12").add_local_file(write(tmp_path / "a"), "/a")
    for step in (lambda im: im.pip_install("x"), lambda im: im.run_commands("x"), lambda im: im.env({"A": "1"}),
                 lambda im: im.add_local_file(tmp_path / "a", "/b", copy=True)):
        with pytest.raises(InvalidError, match="copy=True"):
            step(image)


def test_umask_independent_mode(tmp_path):
    path = write(tmp_path / "run.sh", "#!/bin/sh\n")
    os.chmod(path, 0o755)
    assert last(Image.debian_slim("3.12").add_local_file(path, "/run.sh"))["files"][0]["mode"] == 0o755


# ---- from_dockerfile -----------------------------------------------------------------------


def test_from_dockerfile_hashes_copied_context(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "app" / "main.py", "print(1)")
    write(tmp_path / "app" / "skip.log", "")
    write(tmp_path / "requirements.txt", "numpy")
    write(tmp_path / "unrelated.txt", "")
    write(tmp_path / ".dockerignore", "**/*.log\n")
    text = ("FROM python:3.12\nCOPY --chown=1:1 app /app\nADD requirements.txt \\\n    /r.txt\n"
            "COPY --from=builder /x /y\nADD https://example.com/f.tgz /f\nRUN pip install -r /r.txt\n")
    write(tmp_path / "Dockerfile", text)
    image = Image.from_dockerfile("Dockerfile", add_python="3.12", build_args={"V": "1"})
    layer = last(image)
    assert image.python_version == "3.12"
    assert layer["args"] == {"dockerfile": text, "build_args": {"V": "1"}, "add_python": "3.12", "env": {},
                             "gpu": None}
    assert sorted(f["path"] for f in layer["files"]) == ["app/main.py", "requirements.txt"]
    assert set(image._local_files()) == {f["sha256"] for f in layer["files"]}


def test_from_dockerfile_context_dir_and_explicit_ignore(tmp_path):
    ctx = tmp_path / "ctx"
    write(ctx / "a.txt")
    write(ctx / "b.txt")
    df = write(tmp_path / "Dockerfile", 'FROM x\nCOPY ["a.txt", "b.txt", "/dst/"]\n')
    layer = last(Image.from_dockerfile(df, context_dir=ctx, ignore=["b.txt"]))
    assert [f["path"] for f in layer["files"]] == ["a.txt"]


def test_from_dockerfile_without_copy_has_no_files(tmp_path):
    df = write(tmp_path / "Dockerfile", "FROM x\nRUN echo hi\n")
    assert last(Image.from_dockerfile(df, context_dir=tmp_path / "missing"))["files"] == []


def test_from_dockerfile_errors(tmp_path):
    with pytest.raises(InvalidError, match="can't read the Dockerfile"):
        Image.from_dockerfile(tmp_path / "nope")
    df = write(tmp_path / "Dockerfile", "FROM x\nCOPY . /\n")
    with pytest.raises(InvalidError, match="context directory"):
        Image.from_dockerfile(df, context_dir=tmp_path / "missing")
    with pytest.raises(InvalidError, match="build_args"):
        Image.from_dockerfile(df, build_args={"A": 1})


def test_copy_sources():
    assert copy_sources("FROM a\nCOPY a b /d\ncopy c /e\nADD git@github.com:x/y /z\n") == ["a", "b", "c"]
    assert copy_sources("FROM a\nCOPY $SRC /d\n") is None
    assert copy_sources("FROM a\n# COPY x /y\nRUN x\n") == []


# ---- pattern matching ------------------------------------------------------------------------


@pytest.mark.parametrize(("patterns", "path", "matched"), [
    (["*.txt"], "a.txt", True), (["*.txt"], "d/a.txt", False), (["**/*.txt"], "d/e/a.txt", True),
    (["**/*.txt"], "a.txt", True), (["d"], "d/e/f.py", True), (["d/"], "d/f.py", True),
    (["d/*"], "d/e/f.py", True), (["/d"], "d/x", True), (["a?c"], "abc", True), (["a?c"], "a/c", False),
    (["[ab].py"], "b.py", True), (["[!ab].py"], "b.py", False), (["*.py", "!keep.py"], "keep.py", False),
    (["*.py", "!keep.py", "keep*"], "keep.py", True), (["# comment", ""], "x", False), (["."], "x/y", True),
    (["d/**"], "d/x/y", True), (["d/**/z"], "d/z", True), (["d/**/z"], "d/x/y/z", True),
])
def test_pattern_matcher(patterns, path, matched):
    assert PatternMatcher(patterns)(Path(path)) is matched


# ---- imports() -----------------------------------------------------------------------------


def test_imports_swallows_import_errors_and_records_them():
    base = Image.debian_slim("3.12")
    child = base.pip_install("x")
    with base.imports():
        import skylift_module_that_does_not_exist  # noqa: F401
    with pytest.raises(ImportError):
        child._raise_import_errors()
    Image.debian_slim("3.12")._raise_import_errors()


def test_imports_warns_on_other_exceptions():
    image = Image.debian_slim("3.12")
    with pytest.warns(UserWarning, match="non-ImportError"), image.imports():
        raise KeyError("boom")


def test_imports_lets_code_run():
    with Image.debian_slim("3.12").imports():
        import json
    assert json.dumps(1) == "1"


# ---- inside a container ---------------------------------------------------------------------


def test_local_files_are_not_read_in_a_container(monkeypatch, tmp_path):
    monkeypatch.setenv(api.ENV_TASK_ID, "ta-1")
    image = (Image.debian_slim("3.12").pip_install_from_requirements(str(tmp_path / "nope.txt"))
             .add_local_dir(tmp_path / "missing", "/d").add_local_python_source("nowhere_module"))
    assert image.python_version == "3.12"
    with pytest.raises(InvalidError):
        image._definition()


# ---- hashing -------------------------------------------------------------------------------


def test_definition_is_msgpack_native(tmp_path):
    write(tmp_path / "d" / "a", "a")
    image = (Image.debian_slim("3.12").pip_install("a", gpu=["h100", "a100:2"]).run_function(build_step)
             .add_local_dir(tmp_path / "d", "/d"))
    definition = image._definition()
    assert msgpack.unpackb(msgpack.packb(definition), raw=False) == definition


def test_layer_chain_ids():
    image = Image.debian_slim("3.12").pip_install("numpy").env({"A": "1"})
    ids = image._layer_ids()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert ids == _hashing.layer_chain_ids(image._definition())
    assert Image.debian_slim("3.12").pip_install("numpy")._layer_ids() == ids[:2]
    assert Image.debian_slim("3.12").pip_install("scipy")._layer_ids()[0] == ids[0]
    assert Image.debian_slim("3.12").pip_install("scipy")._layer_ids()[1] != ids[1]
    assert Image.debian_slim("3.13").pip_install("numpy")._layer_ids()[1] != ids[1]
    forced = Image.debian_slim("3.12", force_build=True).pip_install("numpy").env({"A": "1"})
    assert forced._layer_ids() == ids


def test_layer_key_is_canonical():
    a = {"step": "s", "args": {"x": 1, "y": [1, {"b": 2, "a": 1}]}, "files": [
        {"path": "b", "sha256": "2", "mode": 420}, {"path": "a", "sha256": "1", "mode": 420}]}
    b = {"step": "s", "args": {"y": [1, {"a": 1, "b": 2}], "x": 1}, "files": [
        {"path": "a", "sha256": "1", "mode": 420}, {"path": "b", "sha256": "2", "mode": 420}], "force_build": True}
    assert _hashing.layer_key(a) == _hashing.layer_key(b)
    changed_mode = {**a, "files": [{"path": "a", "sha256": "1", "mode": 493}, a["files"][0]]}
    assert _hashing.layer_key(changed_mode) != _hashing.layer_key(a)


def test_cache_key_replaces_files_in_layer_id():
    a = {"step": "run_function", "args": {"cache_key": "k"}, "files": [{"path": "f", "sha256": "1", "mode": 420}]}
    b = {"step": "run_function", "args": {"cache_key": "k"}, "files": [{"path": "f", "sha256": "2", "mode": 420}]}
    assert _hashing.layer_chain_ids({"layers": [a]}) == _hashing.layer_chain_ids({"layers": [b]})


def test_sha256_file_streams(tmp_path):
    data = os.urandom((1 << 20) * 2 + 7)
    path = tmp_path / "big"
    path.write_bytes(data)
    assert _hashing.sha256_file(path) == _hashing.sha256_bytes(data)


# ---- misc ----------------------------------------------------------------------------------


def test_pipe():
    def recipe(image, pkg):
        return image.pip_install(pkg)

    assert last(Image.debian_slim("3.12").pipe(recipe, "numpy"))["args"]["packages"] == ["numpy"]
    with pytest.raises(InvalidError, match="must return an Image"):
        Image.debian_slim("3.12").pipe(lambda image: None)


def test_docstring_examples():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert doctest.testmod(skylift.image).failed == 0
        assert doctest.testmod(skylift._images.packages, extraglobs={"Image": Image}).failed == 0
    assert doctest.testmod(skylift._images.files).failed == 0


def test_auto_dockerignore_is_for_dockerfiles_only(tmp_path):
    from skylift.image import AUTO_DOCKERIGNORE

    write(tmp_path / "a.txt", "x")
    with pytest.raises(InvalidError, match=r"AUTO_DOCKERIGNORE .* applies to Image.from_dockerfile\(\) only"):
        Image.debian_slim("3.12").add_local_dir(tmp_path, "/d", ignore=AUTO_DOCKERIGNORE)


def test_definition_is_a_copy():
    image = Image.debian_slim("3.12").pip_install("numpy")
    layers(image)[-1]["args"]["packages"].append("evil")
    assert last(image)["args"]["packages"] == ["numpy"]
