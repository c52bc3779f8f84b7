"""skylift._traceback: which frames are the platform's, and how a user's traceback is assembled."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

import skylift
from skylift import _serialization as ser
from skylift import _traceback as tbf
from skylift._protocol import api
from skylift.exception import RequestSizeError

PACKAGE = Path(skylift.__file__).parent


def test_platform_frames() -> None:
    for path in [str(PACKAGE / "functions.py"), "/opt/venv/lib/python3.11/site-packages/skylift/_runtime/inputs.py",
                 "/usr/lib/python3.11/site-packages/click/core.py", "/usr/local/lib/python3.11/asyncio/events.py",
                 "/root/.pyenv/versions/3.11.7/lib/python3.11/concurrent/futures/_base.py",
                 "/usr/lib/python3.11/threading.py", "<frozen importlib._bootstrap>", "/work/.venv/bin/skylift",
                 "/opt/skylift-runtime/skylift/_runtime/inputs.py", "/srv/home/runtime-site/skylift/functions.py",
                 "/opt/skylift-runtime/cloudpickle/cloudpickle.py"]:
        assert tbf.is_platform_frame(path), path
    for path in ["/root/app.py", "/home/u/skylift/my_app.py", "/home/u/skylift/app.py", "/root/skylift/functions.py",
                 "/home/u/proj/click_handler.py", "<stdin>",
                 "/usr/lib/python3.11/json/decoder.py"]:
        assert not tbf.is_platform_frame(path), path


def test_full_requested() -> None:
    assert tbf.full_requested({"SKYLIFT_TRACEBACK": "1"}) and tbf.full_requested({"MODAL_TRACEBACK": "true"})
    assert not tbf.full_requested({}) and not tbf.full_requested({"SKYLIFT_TRACEBACK": "0"})


REMOTE = f'''Traceback (most recent call last):
  File "{PACKAGE}/_runtime/inputs.py", line 10, in run
    result = fn(*args)
             ^^^^^^^^^
  File "/root/app.py", line 5, in inner
    return {{}}[x]
           ~~^^^
KeyError: 3

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/root/app.py", line 7, in inner
    raise ValueError(x) from e
ValueError: 3

Remote traceback:
Traceback (most recent call last):
  File "/root/other.py", line 1, in deeper
    boom()
During handling of the above exception, another exception occurred:
'''


def test_trim_text_drops_frames_with_their_source_lines() -> None:
    text, dropped = tbf.trim_text(REMOTE)
    assert dropped == 1 and "inputs.py" not in text and "fn(*args)" not in text and "^^^^^^^^^" not in text
    assert text.count('File "/root/') == 3 and "~~^^^" in text


def test_split_remote_finds_the_last_traceback_of_the_chain() -> None:
    parts = tbf.split_remote(REMOTE)
    assert parts is not None
    before, frames, error = parts
    assert "KeyError: 3" in before and before.rstrip().endswith("direct cause of the following exception:")
    assert [line for line in frames if "File" in line] == ['  File "/root/app.py", line 7, in inner\n']
    # The nested call's traceback stays in the error's notes, even with a separator in it.
    assert error[0] == "ValueError: 3\n" and "deeper" in "".join(error)
    assert tbf.split_remote("no traceback here") is None


def _user_code() -> None:
    raise ValueError("from the user")


def test_local_traceback_keeps_the_users_frames() -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(_user_code)
        try:
            future.result()
        except ValueError as exc:
            text = tbf.format_user_traceback(exc)
    assert "concurrent/futures" not in text and "threading.py" not in text
    assert "future.result()" in text and 'raise ValueError("from the user")' in text
    assert text.splitlines()[-2] == "ValueError: from the user" and text.splitlines()[-1] == tbf.HINT


def _remote_helper(x: int) -> float:
    return 1 / x


def test_remote_exception_is_one_traceback_in_call_order() -> None:
    try:
        _remote_helper(0)
    except ZeroDivisionError as exc:
        output = ser.failure_output(exc)
    try:
        ser.raise_for_output(output, function_name="f")
    except ZeroDivisionError as exc:
        text = tbf.format_user_traceback(exc)
        notes = exc.__notes__
    assert "_serialization.py" not in text and "Remote traceback" not in text
    order = [text.index("ser.raise_for_output("), text.index("_remote_helper(0)"), text.index("return 1 / x"),
             text.index("ZeroDivisionError: division by zero")]
    assert order == sorted(order), text
    assert notes[0].startswith(tbf.REMOTE_NOTE_PREFIX)  # a plain `python script.py` still shows it


def test_a_bug_in_skylift_itself_keeps_every_frame() -> None:
    try:
        ser.deserialize(b"not a pickle")
    except Exception as exc:
        inner = exc.with_traceback(exc.__traceback__.tb_next if exc.__traceback__ else None)
        text = tbf.format_user_traceback(inner)
    assert "_serialization.py" in text and tbf.HINT not in text


def test_syntax_error_needs_no_frames(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = (\n")
    try:
        compile(bad.read_text(), str(bad), "exec")
    except SyntaxError as exc:
        text = tbf.format_user_traceback(exc.with_traceback(None))
    assert f'File "{bad}", line 1' in text and "SyntaxError" in text


def test_oversized_return_value_names_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "MAX_PAYLOAD_BYTES", 1000)
    with pytest.raises(RequestSizeError, match=r"^return value of predict: 0\.0 MiB pickled, over the limit"):
        ser.success_output(b"x" * 2000, function_name="predict")
    with pytest.raises(RequestSizeError, match=r"^arguments of echo: "):
        ser.serialize_args((b"x" * 2000,), {}, function_name="echo")
