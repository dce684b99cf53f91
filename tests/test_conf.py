from __future__ import annotations

import math

import pytest
from django.test import override_settings

from freshstatic.conf import (
    DEFAULTS,
    conf,
    hash_length_error,
    parse_bool,
    parse_seconds,
    setting_errors,
)


def test_defaults() -> None:
    assert (
        "auto",
        DEFAULTS["DEBOUNCE"],
        None,
        1.0,
        False,
        True,
    ) == (
        conf.WATCH,
        conf.DEBOUNCE,
        conf.POLL,
        conf.GENERATION_TTL,
        conf.STRICT,
        conf.SERVE,
    )


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"WATCH": True}, ("WATCH", True)),
        ({"WATCH": False}, ("WATCH", False)),
        ({"POLL": True}, ("POLL", 1.0)),
        ({"POLL": 2.5}, ("POLL", 2.5)),
        ({"POLL": False}, ("POLL", None)),
        ({"DEBOUNCE": 0.2}, ("DEBOUNCE", 0.2)),
        ({"GENERATION_TTL": 0}, ("GENERATION_TTL", 0.0)),
        ({"STRICT": True}, ("STRICT", True)),
        ({"SERVE": False}, ("SERVE", False)),
    ],
)
def test_settings_are_read_at_use_time(
    user: dict[str, object], expected: tuple[str, object]
) -> None:
    key, value = expected
    with override_settings(FRESHSTATIC=user):
        assert getattr(conf, key) == value
    assert getattr(conf, key) == (DEFAULTS[key] if key != "POLL" else None)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        *((word, True) for word in ("true", "True", "TRUE", " yes ", "on", "1")),
        *((word, False) for word in ("false", "False", "no", "OFF", "0", " 0\n")),
        *(
            (value, None)
            for value in ("", "maybe", "t", "2", 2, -1, 0.0, 1.5, None, [True])
        ),
    ],
)
def test_booleans_as_users_write_them(written: object, expected: bool | None) -> None:
    assert parse_bool(written) is expected


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (0, 0.0),
        (2, 2.0),
        (0.5, 0.5),
        ("0.5", 0.5),
        (" 2 ", 2.0),
        ("1e3", 1000.0),
        ("-1", -1.0),
        ("inf", math.inf),
        *((value, None) for value in (True, False, None, "", "1s", "nan", [1])),
        (10**400, None),
    ],
)
def test_seconds_as_users_write_them(written: object, expected: float | None) -> None:
    assert parse_seconds(written) == expected


@pytest.mark.parametrize(
    ("key", "written", "expected"),
    [
        ("STRICT", "false", False),
        ("STRICT", "On", True),
        ("SERVE", "0", False),
        ("SERVE", "no", False),
        ("WATCH", "FALSE", False),
        ("WATCH", "yes", True),
        ("WATCH", "AUTO", "auto"),
        ("POLL", "off", None),
        ("POLL", "true", 1.0),
        ("POLL", 0, None),
        ("POLL", "2.5", 2.5),
        ("DEBOUNCE", "0.1", 0.1),
        ("GENERATION_TTL", "5", 5.0),
    ],
)
def test_strings_are_read_as_users_mean_them(
    key: str, written: object, expected: object
) -> None:
    with override_settings(FRESHSTATIC={key: written}):
        assert getattr(conf, key) == expected
        assert setting_errors() == []


@pytest.mark.parametrize(
    ("key", "written", "expected"),
    [
        ("POLL", 1e9, 60.0),
        ("POLL", "1e9", 60.0),
        ("POLL", 0.0005, 0.05),
        ("POLL", math.inf, 60.0),
        ("DEBOUNCE", 60, 5.0),
        ("DEBOUNCE", -1, 0.0),
        ("GENERATION_TTL", 3600, 300.0),
        ("GENERATION_TTL", "-0.5", 0.0),
    ],
)
def test_numbers_out_of_range_are_clamped_and_reported(
    key: str, written: object, expected: float
) -> None:
    with override_settings(FRESHSTATIC={key: written}):
        assert getattr(conf, key) == expected
        (error,) = setting_errors()
        assert error.startswith(f"FRESHSTATIC[{key!r}] must be ")
        assert error.endswith(f"; {expected:g} is used.")


@pytest.mark.parametrize("written", [0.0, -1, "-0.5", -math.inf])
def test_a_poll_interval_of_zero_or_less_means_native_events(written: object) -> None:
    with override_settings(FRESHSTATIC={"POLL": written}):
        assert conf.POLL is None
        (error,) = setting_errors()
        assert error.endswith("; native events are used.")


@pytest.mark.parametrize(
    "user",
    [
        "not a dict",
        {
            "WATCH": "sometimes",
            "POLL": "2s",
            "DEBOUNCE": "soon",
            "GENERATION_TTL": "x",
            "STRICT": "nope",
            "SERVE": 2,
        },
        {"POLL": "nan", "DEBOUNCE": None, "GENERATION_TTL": [1], "STRICT": None},
    ],
)
def test_invalid_values_fall_back_to_defaults(user: object) -> None:
    with override_settings(FRESHSTATIC=user):
        assert (
            "auto",
            None,
            DEFAULTS["DEBOUNCE"],
            DEFAULTS["GENERATION_TTL"],
            False,
            True,
        ) == (
            conf.WATCH,
            conf.POLL,
            conf.DEBOUNCE,
            conf.GENERATION_TTL,
            conf.STRICT,
            conf.SERVE,
        )
        # Every value that is not used as written is reported.
        assert len(setting_errors()) == (len(user) if isinstance(user, dict) else 1)


@pytest.mark.parametrize(
    ("length", "algorithm", "maximum"),
    [
        (200, "sha256", "64 for sha256"),
        (3, "sha1", "40 for sha1"),
        (3, "sha999", "128"),
        (129, None, "128"),
        ("12", "md5", "32 for md5"),
    ],
)
def test_hash_length_is_checked_even_without_a_valid_algorithm(
    length: object, algorithm: object, maximum: str
) -> None:
    assert hash_length_error(length, algorithm) == (
        f"hash_length must be an integer from 6 to {maximum}, not {length!r}."
    )


@pytest.mark.parametrize(
    ("length", "algorithm"), [(12, "sha256"), (128, "sha999"), (128, "sha512")]
)
def test_valid_hash_lengths(length: int, algorithm: str) -> None:
    assert hash_length_error(length, algorithm) is None
