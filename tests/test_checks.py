from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

FRESH = "freshstatic.storage.FreshStaticFilesStorage"


def staticfiles(backend: str = FRESH, **options: Any) -> dict[str, Any]:
    return {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": backend, "OPTIONS": options},
    }


def ids(**settings: Any) -> list[str]:
    with override_settings(**settings):
        return sorted(
            message.id
            for message in run_checks(tags=["staticfiles"])
            if message.id and message.id.startswith("freshstatic.")
        )


def test_default_configuration_is_clean() -> None:
    assert ids() == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"INSTALLED_APPS": ["django.contrib.staticfiles", "tests.testapp"]},
            ["freshstatic.E001"],
        ),
        ({"STORAGES": staticfiles(cache_alias="nope")}, ["freshstatic.E002"]),
        ({"STORAGES": staticfiles(hash_algorithm="sha999")}, ["freshstatic.E003"]),
        ({"STORAGES": staticfiles(hash_algorithm="SHAKE_128")}, ["freshstatic.E003"]),
        (
            {"STORAGES": staticfiles(hash_algorithm="BLAKE2B", hash_length=200)},
            ["freshstatic.E004"],
        ),
        ({"STORAGES": staticfiles(hash_length=3)}, ["freshstatic.E004"]),
        (
            {"STORAGES": staticfiles(hash_algorithm="sha1", hash_length=41)},
            ["freshstatic.E004"],
        ),
        ({"STORAGES": staticfiles(key_prefix="a b")}, ["freshstatic.E005"]),
        ({"STORAGES": staticfiles(query_param="v=1")}, ["freshstatic.E005"]),
        ({"FRESHSTATIC": {"NOPE": 1}}, ["freshstatic.E006"]),
        (
            {"FRESHSTATIC": {"WATCH": "sometimes", "DEBOUNCE": -1}},
            ["freshstatic.E006"] * 2,
        ),
        ({"FRESHSTATIC": {"POLL": 0, "GENERATION_TTL": "1"}}, ["freshstatic.E006"] * 2),
        ({"FRESHSTATIC": ["WATCH"]}, ["freshstatic.E006"]),
        (
            {
                "CACHES": {
                    "default": {
                        "BACKEND": "django.core.cache.backends.dummy.DummyCache"
                    }
                }
            },
            ["freshstatic.W001"],
        ),
        ({"CACHES": {"default": {"BACKEND": "no.such.Cache"}}}, []),
        ({"FRESHSTATIC": {"WATCH": False}}, ["freshstatic.W003"]),
        (
            {
                "MIDDLEWARE": ["freshstatic.middleware.FreshStaticMiddleware"],
                "INSTALLED_APPS": ["django.contrib.staticfiles", "freshstatic"],
            },
            ["freshstatic.W005"],
        ),
        (
            {
                "MIDDLEWARE": ["freshstatic.middleware.FreshStaticMiddleware"],
                "INSTALLED_APPS": ["freshstatic", "django.contrib.staticfiles"],
            },
            [],
        ),
        ({"FRESHSTATIC": {"SERVE": "yes", "STRICT": 1}}, ["freshstatic.E006"] * 2),
        (
            {
                "STORAGES": staticfiles(
                    "django.contrib.staticfiles.storage.StaticFilesStorage"
                )
            },
            ["freshstatic.W002"],
        ),
    ],
)
def test_each_misconfiguration_gets_exactly_its_ids(
    settings: dict[str, Any], expected: list[str]
) -> None:
    assert ids(**settings) == expected


def test_valid_non_default_settings_pass() -> None:
    assert (
        ids(
            STORAGES=staticfiles(
                hash_algorithm="blake2b", hash_length=20, key_prefix="site1"
            ),
            FRESHSTATIC={
                "WATCH": True,
                "DEBOUNCE": 0.1,
                "POLL": 2,
                "GENERATION_TTL": 0,
            },
        )
        == []
    )


def test_unknown_storage_backend_is_left_to_django() -> None:
    assert ids(STORAGES=staticfiles("no.such.Storage")) == []


def test_checks_run_through_manage_py_check() -> None:
    with (
        override_settings(STORAGES=staticfiles(hash_algorithm="sha999")),
        pytest.raises(SystemCheckError, match=r"freshstatic\.E003"),
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()
