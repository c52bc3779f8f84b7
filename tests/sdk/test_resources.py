import doctest

import pytest

import skylift._resources
from skylift._resources import (
    GPU_TYPES,
    MAX_EPHEMERAL_DISK_MB,
    gpu_matches,
    parse_cloud,
    parse_cpu,
    parse_ephemeral_disk,
    parse_gpu,
    parse_memory,
    parse_region,
    validate_autoscaler,
    validate_resources,
    validate_startup_timeout,
    validate_timeout,
)
from skylift.exception import InvalidError

# ---- gpu -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "gpu_type"), [
    ("T4", "T4"), ("t4", "T4"), ("L4", "L4"), ("A10", "A10"), ("a10g", "A10G"), ("A10G", "A10G"),
    ("A100", "A100"), ("a100-40gb", "A100-40GB"), ("A100-80GB", "A100-80GB"), ("l40s", "L40S"),
    ("H100", "H100"), ("h100!", "H100!"), ("H200", "H200"), ("b200", "B200"), ("any", "ANY"), ("ANY", "ANY"),
])
def test_gpu_names_case_insensitive(text, gpu_type):
    assert parse_gpu(text) == {"type": gpu_type, "count": 1, "fallbacks": []}


def test_every_known_name_parses():
    for name in GPU_TYPES:
        assert parse_gpu(name)["type"] == GPU_TYPES[name]


def test_gpu_none():
    assert parse_gpu(None) is None


@pytest.mark.parametrize(("text", "count"), [("H100:1", 1), ("H100:8", 8), ("a10:4", 4), ("any:3", 3),
                                             (" h100 : 2 ", 2)])
def test_gpu_count(text, count):
    assert parse_gpu(text)["count"] == count


@pytest.mark.parametrize(("text", "match"), [
    ("H100:0", "between 1 and 8"), ("H100:9", "between 1 and 8"), ("A10:5", "between 1 and 4"),
    ("H100:two", "must be an integer"), ("H100:", "must be an integer"), ("V100", "unknown GPU type 'V100'"),
    ("", "unknown GPU type"), ("H100:-1", "between 1 and 8"),
])
def test_gpu_bad_strings(text, match):
    with pytest.raises(InvalidError, match=match):
        parse_gpu(text)


@pytest.mark.parametrize("value", [True, 1, object(), 2.5])
def test_gpu_bad_types(value):
    with pytest.raises(InvalidError, match="gpu="):
        parse_gpu(value)


def test_gpu_false_means_no_gpu():
    assert parse_gpu(False) is None  # Modal accepts gpu=False (issue 11, item 5)


def test_gpu_fallback_list():
    assert parse_gpu(["H100", "A100-40GB:2", "any"]) == {
        "type": "H100", "count": 1,
        "fallbacks": [{"type": "A100-40GB", "count": 2}, {"type": "ANY", "count": 1}]}
    assert parse_gpu(("l4",)) == {"type": "L4", "count": 1, "fallbacks": []}


def test_gpu_bad_lists():
    with pytest.raises(InvalidError, match="empty list"):
        parse_gpu([])
    with pytest.raises(InvalidError, match="V100"):
        parse_gpu(["H100", "V100"])
    with pytest.raises(InvalidError, match="count"):
        parse_gpu(["H100", "A10:8"])
    with pytest.raises(InvalidError, match="A10G count must be between 1 and 4"):  # the name as written
        parse_gpu("a10g:5")


@pytest.mark.parametrize(("requested", "available", "ok"), [
    ("H100", "H100", True), ("H100", "H200", True), ("H100!", "H100", True), ("H100!", "H200", False),
    ("A100", "A100-40GB", True), ("A100", "A100-80GB", True), ("A100-40GB", "A100-80GB", False),
    ("ANY", "T4", True), ("T4", "L4", False), ("H200", "H100", False),
    ("A10G", "A10", True), ("A10", "A10G", True), ("A10G", "A10G", True), ("A10G", "L4", False),
])
def test_gpu_matches(requested, available, ok):
    assert gpu_matches(requested, available) is ok


# ---- cpu / memory / disk -----------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (1, (1.0, None)), (0.25, (0.25, None)), ((0.5, 2), (0.5, 2.0)), ((1, 1), (1.0, 1.0)),
])
def test_cpu_ok(value, expected):
    assert parse_cpu(value) == expected


@pytest.mark.parametrize(("value", "match"), [
    (0, "positive"), (-1, "positive"), ("2", "number of cores"), (True, "number of cores"),
    (float("nan"), "number of cores"), ((2, 1), "lower than the request"), ((0, 1), "positive"),
    ((1,), "request, limit"), ((1, 2, 3), "request, limit"), (("1", 2), "request, limit"),
])
def test_cpu_bad(value, match):
    with pytest.raises(InvalidError, match=match) as info:
        parse_cpu(value)
    assert "cpu=" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (128, (128, None)), ((256, 1024), (256, 1024)), ((512, 512), (512, 512)),
])
def test_memory_ok(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize(("value", "match"), [
    (0, "positive"), (-5, "positive"), (1.5, "int number of MiB"), ("1G", "int number of MiB"),
    (True, "int number of MiB"), ((1024, 512), "lower than the request"), ((0, 10), "positive"),
    ((1.0, 2), "two ints"),
])
def test_memory_bad(value, match):
    with pytest.raises(InvalidError, match=match) as info:
        parse_memory(value)
    assert "memory=" in str(info.value)


def test_ephemeral_disk():
    assert parse_ephemeral_disk(None) is None
    assert parse_ephemeral_disk(1024) == 1024
    assert parse_ephemeral_disk(MAX_EPHEMERAL_DISK_MB) == MAX_EPHEMERAL_DISK_MB
    for bad in (0, -1, MAX_EPHEMERAL_DISK_MB + 1, 1.5, True):
        with pytest.raises(InvalidError, match="ephemeral_disk="):
            parse_ephemeral_disk(bad)


def test_validate_resources():
    assert validate_resources() == {"cpu": None, "cpu_limit": None, "memory": None, "memory_limit": None,
                                    "gpu": None, "ephemeral_disk": None}
    got = validate_resources(cpu=2, memory=(1024, 4096), gpu="h100:2", ephemeral_disk=10_000)
    assert got == {"cpu": 2.0, "cpu_limit": None, "memory": 1024, "memory_limit": 4096,
                   "gpu": {"type": "H100", "count": 2, "fallbacks": []}, "ephemeral_disk": 10_000}


# ---- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (300, 300), (86400, 86400), (1.2, 2), (59.5, 60)])
def test_timeout_ok(value, expected):
    assert validate_timeout(value) == expected


@pytest.mark.parametrize("value", [0, 0.5, -1, 86401, "300", True, float("inf")])
def test_timeout_bad(value):
    with pytest.raises(InvalidError, match=r"timeout=.*between 1 and 86400"):
        validate_timeout(value)


def test_timeout_none_rejected_with_fix():
    with pytest.raises(InvalidError, match=r"timeout=None.*86400"):
        validate_timeout(None)


def test_startup_timeout():
    assert validate_startup_timeout(None) is None
    assert validate_startup_timeout(30) == 30
    with pytest.raises(InvalidError, match="startup_timeout="):
        validate_startup_timeout(0)


# ---- autoscaler ----------------------------------------------------------------------------


def test_autoscaler_defaults():
    assert validate_autoscaler() == {"min_containers": 0, "max_containers": None, "buffer_containers": 0,
                                     "scaledown_window": 60}


def test_autoscaler_values():
    assert validate_autoscaler(min_containers=2, max_containers=2, buffer_containers=1,
                               scaledown_window=2) == {
        "min_containers": 2, "max_containers": 2, "buffer_containers": 1, "scaledown_window": 2}
    assert validate_autoscaler(scaledown_window=1200)["scaledown_window"] == 1200
    assert validate_autoscaler(scaledown_window=2.5)["scaledown_window"] == 3


def test_autoscaler_partial():
    assert validate_autoscaler(partial=True) == {}
    assert validate_autoscaler(max_containers=3, partial=True) == {"max_containers": 3}


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"min_containers": -1}, "min_containers"), ({"min_containers": 1.0}, "min_containers"),
    ({"max_containers": 0}, "max_containers"), ({"max_containers": True}, "max_containers"),
    ({"buffer_containers": -1}, "buffer_containers"), ({"scaledown_window": 1}, "scaledown_window"),
    ({"scaledown_window": 1201}, "scaledown_window"), ({"scaledown_window": "60"}, "scaledown_window"),
    ({"min_containers": 3, "max_containers": 2}, "lower than min_containers"),
])
def test_autoscaler_bad(kwargs, name):
    with pytest.raises(InvalidError, match=name):
        validate_autoscaler(**kwargs)


# ---- placement -----------------------------------------------------------------------------


def test_region_and_cloud():
    assert parse_region(None) is None
    assert parse_region("US-East") == ["us-east"]
    assert parse_region(["us", "eu-west"]) == ["us", "eu-west"]
    assert parse_cloud("aws") == ["aws"]
    assert parse_cloud(["aws", "GCP"]) == ["aws", "gcp"]


@pytest.mark.parametrize("value", ["", [], ["us", ""], [1], 5, {"us"}])
def test_region_and_cloud_bad(value):
    with pytest.raises(InvalidError, match="region="):
        parse_region(value)
    with pytest.raises(InvalidError, match="cloud="):
        parse_cloud(value)


def test_docstring_examples():
    assert doctest.testmod(skylift._resources).failed == 0
