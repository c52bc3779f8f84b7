"""Storage handles without a platform: names, pickling by reference, secrets=/volumes= checks, .env parsing."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import skylift as modal
from skylift import _attachments
from skylift.exception import InvalidError
from skylift.secret import _find_dotenv, parse_dotenv


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "é", "a/b"])
def test_bad_names_fail_at_once(name: str) -> None:
    for cls in (modal.Dict, modal.Queue, modal.Volume):
        with pytest.raises(InvalidError, match="invalid"):
            cls.from_name(name)
    with pytest.raises(InvalidError):
        modal.Secret.from_name(name)


def test_handles_pickle_by_reference() -> None:
    d = modal.Dict.from_name("some-dict", environment_name="dev", create_if_missing=True)
    back = pickle.loads(pickle.dumps(d))
    assert isinstance(back, modal.Dict) and back.name == "some-dict" and back._environment_name == "dev"
    assert back._create_if_missing and back._object_id is None  # looked up lazily, where it is used
    q = pickle.loads(pickle.dumps(modal.Queue.from_id("qu-123")))
    assert q._object_id == "qu-123"
    with pytest.raises(InvalidError, match="not a Volume id"):
        modal.Volume.from_id("di-1")
    assert repr(modal.Dict.from_name("x")) == "Dict.from_name('x')"


def test_secrets_and_volumes_are_checked_when_decorated() -> None:
    vol = modal.Volume.from_name("v")
    secrets, volumes = _attachments.check([modal.Secret.from_dict({"A": "1"})], {"/data/": vol}, "f")
    assert list(volumes) == ["/data"] and len(secrets) == 1
    for bad, match in [({"data": vol}, "absolute"), ({"/": vol}, "can't mount"), ({"/usr": vol}, "can't mount"),
                       ({"/a/../b": vol}, r"\.\."), ({"/data": "nope"}, r"modal\.Volume"),
                       ({"/a": vol, "/a/b": vol}, "overlap")]:
        with pytest.raises(InvalidError, match=match):
            _attachments.check([], bad, "f")
    with pytest.raises(InvalidError, match=r"modal\.Secret"):
        _attachments.check(["KEY=value"], {}, "f")
    app = modal.App("checks")
    with pytest.raises(InvalidError, match="overlap"):
        app.function(volumes={"/x": vol, "/x/y": vol})(lambda: None)
    with pytest.raises(InvalidError, match="str to str"):
        modal.Secret.from_dict({"A": 1})  # type: ignore[dict-item]


def test_cloud_bucket_mount_checks() -> None:
    creds = modal.Secret.from_dict({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    mount = modal.CloudBucketMount("b", bucket_endpoint_url="https://example.r2.cloudflarestorage.com",
                                   key_prefix="p/", secret=creds, read_only=True)
    wire = mount._to_wire("/bucket", "st-1")
    assert wire["key_prefix"] == "p/" and wire["read_only"] and wire["secret_id"] == "st-1"
    with pytest.raises(InvalidError, match="oidc"):
        modal.CloudBucketMount("b", oidc_auth_role_arn="arn:aws:iam::1:role/x")
    with pytest.raises(InvalidError, match="requester_pays"):
        modal.CloudBucketMount("b", requester_pays=True)
    with pytest.raises(InvalidError, match=r"modal\.Secret"):
        modal.CloudBucketMount("b", secret={"A": "b"})


def test_dotenv_parsing_and_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = ('# a comment\nA=1\nexport B="two words"\nC=\'single # not a comment\'\nD=plain # comment\n'
            'E="line\\nbreak"\nnot a pair\n\n')
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "single # not a comment", "D": "plain",
                                  "E": "line\nbreak"}
    (tmp_path / ".env").write_text("A=1\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert _find_dotenv(None, ".env") == tmp_path / ".env"
    assert _find_dotenv(tmp_path, ".env") == tmp_path / ".env"
    assert _find_dotenv(None, "missing.env") is None
