import doctest

import pytest

import skylift.retries
from skylift.exception import InvalidError
from skylift.retries import Retries, delay_for_attempt, parse_retries


def test_defaults_match_modal():
    r = Retries(max_retries=3)
    assert r._to_wire() == {
        "max_retries": 3, "backoff_coefficient": 2.0, "initial_delay": 1.0, "max_delay": 60.0}


def test_from_int_is_fixed_one_second():
    assert Retries.from_int(4)._to_wire() == {
        "max_retries": 4, "backoff_coefficient": 1.0, "initial_delay": 1.0, "max_delay": 60.0}
    assert parse_retries(4) == Retries.from_int(4)._to_wire()
    assert parse_retries(None) is None
    policy = Retries(max_retries=1, initial_delay=5)
    assert parse_retries(policy) == policy._to_wire()


@pytest.mark.parametrize("value", [0, 1, 10])
def test_max_retries_bounds_ok(value):
    assert Retries(max_retries=value).max_retries == value


@pytest.mark.parametrize("value", [-1, 11, 2.0, True, "3", None])
def test_max_retries_rejected(value):
    with pytest.raises(InvalidError, match="max_retries"):
        Retries(max_retries=value)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"backoff_coefficient": 0.5}, "backoff_coefficient"),
    ({"backoff_coefficient": 10.5}, "backoff_coefficient"),
    ({"backoff_coefficient": float("nan")}, "backoff_coefficient"),
    ({"initial_delay": -0.1}, "initial_delay"),
    ({"initial_delay": 61}, "initial_delay"),
    ({"max_delay": 0.5}, "max_delay"),
    ({"max_delay": 61}, "max_delay"),
    ({"max_delay": "10"}, "max_delay"),
])
def test_bad_values_name_the_parameter(kwargs, name):
    with pytest.raises(InvalidError, match=name):
        Retries(max_retries=2, **kwargs)


def test_edges_accepted():
    Retries(max_retries=2, backoff_coefficient=1.0, initial_delay=0.0, max_delay=1.0)
    Retries(max_retries=2, backoff_coefficient=10.0, initial_delay=60.0, max_delay=60.0)


@pytest.mark.parametrize("value", ["2", 2.0, True, [1]])
def test_parse_retries_rejects_other_types(value):
    with pytest.raises(InvalidError, match="retries"):
        parse_retries(value)


def test_delay_exponential_and_capped():
    wire = Retries(max_retries=10, backoff_coefficient=2.0, initial_delay=1.0, max_delay=30.0)._to_wire()
    assert [delay_for_attempt(wire, n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert delay_for_attempt(wire, 10_000) == 30.0


def test_delay_fixed_and_zero():
    assert delay_for_attempt(Retries.from_int(3)._to_wire(), 3) == 1.0
    zero = Retries(max_retries=3, initial_delay=0.0)._to_wire()
    assert delay_for_attempt(zero, 5) == 0.0


def test_delay_rejects_attempt_zero():
    with pytest.raises(ValueError):
        delay_for_attempt(Retries.from_int(1)._to_wire(), 0)


def test_equality_and_repr():
    assert Retries(max_retries=2) == Retries(max_retries=2)
    assert Retries(max_retries=2) != Retries(max_retries=3)
    assert len({Retries(max_retries=2), Retries(max_retries=2)}) == 1
    assert "max_retries=2" in repr(Retries(max_retries=2))


def test_docstring_examples():
    assert doctest.testmod(skylift.retries).failed == 0
