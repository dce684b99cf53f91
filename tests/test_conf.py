from __future__ import annotations

import pytest
from django.test import override_settings

from freshstatic.conf import DEFAULTS, conf


def test_defaults() -> None:
    assert (
        "auto",
        DEFAULTS["DEBOUNCE"],
        None,
        1.0,
        False,
    ) == (conf.WATCH, conf.DEBOUNCE, conf.POLL, conf.GENERATION_TTL, conf.STRICT)


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
    "user",
    [
        "not a dict",
        {"WATCH": "sometimes", "POLL": "2s", "DEBOUNCE": -1, "GENERATION_TTL": "x"},
    ],
)
def test_invalid_values_fall_back_to_defaults(user: object) -> None:
    with override_settings(FRESHSTATIC=user):
        assert (
            "auto",
            None,
            DEFAULTS["DEBOUNCE"],
            DEFAULTS["GENERATION_TTL"],
        ) == (conf.WATCH, conf.POLL, conf.DEBOUNCE, conf.GENERATION_TTL)
