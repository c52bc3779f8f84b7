"""Modal names skylift adds for compatibility: `modal.runner`, `modal.output`, the web decorators under
`modal.partial_function`, `modal.cls.is_parameter`, `modal.web_endpoint`."""

from __future__ import annotations

import pytest

import skylift
from skylift import _output, cls, partial_function, runner, web
from skylift.exception import InvalidError


def test_web_decorators_are_also_under_partial_function() -> None:
    for name in ("asgi_app", "fastapi_endpoint", "web_endpoint", "web_server", "wsgi_app"):
        assert getattr(partial_function, name) is getattr(web, name)
    with pytest.raises(AttributeError):
        partial_function.no_such_decorator  # noqa: B018


def test_output_and_runner_modules() -> None:
    from skylift.output import enable_output

    assert enable_output is _output.enable_output is skylift.enable_output
    app = skylift.App("runner-names")
    assert type(runner.run_app(app)) is type(app.run())
    with pytest.raises(InvalidError, match="recreate"):
        runner.deploy_app(app, deployment_strategy="recreate")
    with pytest.raises(InvalidError, match="staged"):
        runner.deploy_app(app, staged=True)


def test_is_parameter() -> None:
    assert cls.is_parameter(skylift.parameter(default=1))
    assert not cls.is_parameter(skylift.parameter(init=False)) and not cls.is_parameter(1)


def test_file_pattern_matcher_is_modals_name() -> None:
    from skylift.file_pattern_matcher import NON_PYTHON_FILES, FilePatternMatcher

    assert skylift.FilePatternMatcher is FilePatternMatcher
    assert repr(NON_PYTHON_FILES) == "skylift.file_pattern_matcher.NON_PYTHON_FILES"
