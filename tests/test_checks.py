from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from freshstatic.storage import FreshStaticMixin

FRESH = "freshstatic.storage.FreshStaticFilesStorage"
FRESH_SETTINGS_STORAGE = "tests.test_checks.FreshSettingsStorage"
REGIONS = frozenset({"eu-west-1", "us-east-1"})
SETTINGS_STORAGE_OPTIONS = frozenset({"bucket_name", "region_name"})


class SettingsStorage(Storage):
    """Takes its options the way django-storages' S3Storage does: by name,
    from a table, refusing any other with ImproperlyConfigured."""

    def __init__(self, **settings: Any) -> None:
        for name, value in settings.items():
            if name not in SETTINGS_STORAGE_OPTIONS:
                raise ImproperlyConfigured(
                    f"Invalid setting '{name}' for {type(self).__name__}"
                )
            if name == "region_name" and value not in REGIONS:
                raise ValueError(f"Unknown region {value!r}.")

    def url(self, name: str | None) -> str:
        return f"https://bucket.example.com/{name}"


class FreshSettingsStorage(FreshStaticMixin, SettingsStorage):
    pass


def staticfiles(backend: str = FRESH, **options: Any) -> dict[str, Any]:
    return {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": backend, "OPTIONS": options},
    }


def messages(**settings: Any) -> list[CheckMessage]:
    with override_settings(**settings):
        return sorted(
            (
                message
                for message in run_checks(tags=["staticfiles"])
                if message.id and message.id.startswith("freshstatic.")
            ),
            key=lambda message: (message.id, message.msg),
        )


def ids(**settings: Any) -> list[str]:
    return [str(message.id) for message in messages(**settings)]


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
        ({"STORAGES": staticfiles(cache_alias=["default"])}, ["freshstatic.E002"]),
        ({"STORAGES": staticfiles(hash_algorithm="sha999")}, ["freshstatic.E003"]),
        ({"STORAGES": staticfiles(hash_algorithm="SHAKE_128")}, ["freshstatic.E003"]),
        (
            {"STORAGES": staticfiles(hash_algorithm="BLAKE2B", hash_length=200)},
            ["freshstatic.E004"],
        ),
        ({"STORAGES": staticfiles(hash_length=3)}, ["freshstatic.E004"]),
        ({"STORAGES": staticfiles(hash_length="12")}, ["freshstatic.E004"]),
        ({"STORAGES": staticfiles(hash_length=True)}, ["freshstatic.E004"]),
        (
            {"STORAGES": staticfiles(hash_algorithm="sha1", hash_length=41)},
            ["freshstatic.E004"],
        ),
        # A bad length is reported even when the algorithm is invalid too...
        (
            {"STORAGES": staticfiles(hash_algorithm="sha999", hash_length=3)},
            ["freshstatic.E003", "freshstatic.E004"],
        ),
        (
            {"STORAGES": staticfiles(hash_algorithm="sha999", hash_length=129)},
            ["freshstatic.E003", "freshstatic.E004"],
        ),
        # ...against the longest digest (128 hex digits), whatever it will be.
        (
            {"STORAGES": staticfiles(hash_algorithm="sha999", hash_length=128)},
            ["freshstatic.E003"],
        ),
        ({"STORAGES": staticfiles(key_prefix="a b")}, ["freshstatic.E005"]),
        ({"STORAGES": staticfiles(query_param="v=1")}, ["freshstatic.E005"]),
        ({"STORAGES": staticfiles(strict="maybe")}, ["freshstatic.E005"]),
        ({"STORAGES": staticfiles(hash_lenght=8)}, ["freshstatic.E007"]),
        (
            {"STORAGES": staticfiles(hash_lenght=8, querry_param="h")},
            ["freshstatic.E007"] * 2,
        ),
        (
            {"STORAGES": staticfiles(hash_lenght=8, hash_algorithm="sha999")},
            ["freshstatic.E003", "freshstatic.E007"],
        ),
        # Django's own refusal to create it (no STATIC_URL).
        ({"STORAGES": staticfiles(base_url="")}, ["freshstatic.E007"]),
        (
            {"STORAGES": staticfiles(FRESH_SETTINGS_STORAGE, bucket_nam="static")},
            ["freshstatic.E007"],
        ),
        (
            {"STORAGES": staticfiles(FRESH_SETTINGS_STORAGE, region_name="mars")},
            ["freshstatic.E007"],
        ),
        ({"FRESHSTATIC": {"NOPE": 1}}, ["freshstatic.E006"]),
        (
            {"FRESHSTATIC": {"WATCH": "sometimes", "DEBOUNCE": -1}},
            ["freshstatic.E006"] * 2,
        ),
        (
            {"FRESHSTATIC": {"POLL": -1, "GENERATION_TTL": "x"}},
            ["freshstatic.E006"] * 2,
        ),
        ({"FRESHSTATIC": ["WATCH"]}, ["freshstatic.E006"]),
        ({"FRESHSTATIC": {"SERVE": "yess", "STRICT": 2}}, ["freshstatic.E006"] * 2),
        ({"FRESHSTATIC": {"STRICT": None}}, ["freshstatic.E006"]),
        # Bounds: never updating, and burning a core while idle.
        ({"FRESHSTATIC": {"POLL": 1e9}}, ["freshstatic.E006"]),
        ({"FRESHSTATIC": {"POLL": 0.0005}}, ["freshstatic.E006"]),
        ({"FRESHSTATIC": {"POLL": "nan"}}, ["freshstatic.E006"]),
        ({"FRESHSTATIC": {"DEBOUNCE": 5.5}}, ["freshstatic.E006"]),
        ({"FRESHSTATIC": {"GENERATION_TTL": "301"}}, ["freshstatic.E006"]),
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
        ({"FRESHSTATIC": {"WATCH": "false"}}, ["freshstatic.W003"]),
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
                "INSTALLED_APPS": ["django.contrib.staticfiles", "freshstatic"],
                "FRESHSTATIC": {"SERVE": "off"},
            },
            [],
        ),
        (
            {
                "MIDDLEWARE": ["freshstatic.middleware.FreshStaticMiddleware"],
                "INSTALLED_APPS": ["freshstatic", "django.contrib.staticfiles"],
            },
            [],
        ),
        (
            {
                "MIDDLEWARE": [
                    "freshstatic.middleware.FreshStaticMiddleware",
                    "django.middleware.security.SecurityMiddleware",
                ]
            },
            ["freshstatic.W007"],
        ),
        (
            {
                "MIDDLEWARE": [
                    "freshstatic.middleware.FreshStaticMiddleware",
                    "django.middleware.security.SecurityMiddleware",
                ],
                "FRESHSTATIC": {"SERVE": False},
            },
            ["freshstatic.W007"],
        ),
        (
            {
                "MIDDLEWARE": [
                    "django.middleware.security.SecurityMiddleware",
                    "freshstatic.middleware.FreshStaticMiddleware",
                ]
            },
            [],
        ),
        (
            {
                "MIDDLEWARE": ["freshstatic.middleware.FreshStaticMiddleware"],
                "FRESHSTATIC": {"COMPRESSION": ["br", "gzip"]},
            },
            [],
        ),
        ({"FRESHSTATIC": {"COMPRESSION": ["deflate"]}}, ["freshstatic.E006"]),
        ({"FRESHSTATIC": {"COMPRESSION_LEVELS": {"br": 12}}}, ["freshstatic.E006"]),
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
                hash_algorithm="blake2b",
                hash_length=20,
                key_prefix="site1",
                strict="false",
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


@pytest.mark.parametrize(
    "freshstatic",
    [
        # As read from environment variables.
        {"STRICT": "false", "SERVE": "On", "WATCH": "TRUE", "POLL": "off"},
        {"STRICT": "1", "SERVE": "no", "WATCH": "Auto", "POLL": "yes"},
        {"DEBOUNCE": "0.1", "POLL": "0.5", "GENERATION_TTL": " 2 "},
        # The bounds themselves.
        {"DEBOUNCE": 0, "POLL": 0.05, "GENERATION_TTL": 300},
        {"DEBOUNCE": 5, "POLL": 60, "GENERATION_TTL": 0},
    ],
)
def test_values_written_as_strings_pass(freshstatic: dict[str, Any]) -> None:
    assert ids(FRESHSTATIC=freshstatic) == []


def test_options_of_the_parent_storage_pass(tmp_path: Any) -> None:
    assert (
        ids(
            STORAGES=staticfiles(
                location=str(tmp_path),
                base_url="/assets/",
                file_permissions_mode=0o644,
                hash_length=8,
            )
        )
        == []
    )
    assert (
        ids(
            STORAGES=staticfiles(
                FRESH_SETTINGS_STORAGE,
                bucket_name="static",
                region_name="eu-west-1",
                hash_length=8,
            )
        )
        == []
    )


def test_a_misspelt_option_names_the_option_it_resembles() -> None:
    (message,) = messages(STORAGES=staticfiles(hash_lenght=8))
    assert message.msg == (
        "STORAGES['staticfiles']['OPTIONS'] has 'hash_lenght', which "
        "freshstatic.storage.FreshStaticFilesStorage does not accept."
    )
    assert message.hint
    assert message.hint.startswith("Did you mean 'hash_length'? ")


def test_a_misspelt_option_of_the_parent_storage_is_named() -> None:
    (message,) = messages(
        STORAGES=staticfiles(FRESH_SETTINGS_STORAGE, querry_param="h")
    )
    assert "has 'querry_param', which tests.test_checks." in message.msg
    assert message.hint
    assert message.hint.startswith("Did you mean 'query_param'? ")
    (message,) = messages(
        STORAGES=staticfiles(FRESH_SETTINGS_STORAGE, region_name="mars")
    )
    assert message.msg.endswith("ValueError: Unknown region 'mars'.")


def test_a_storage_that_cannot_be_created_says_why() -> None:
    (message,) = messages(STORAGES=staticfiles(base_url=""))
    assert message.msg == (
        "STORAGES['staticfiles'] cannot be created with its OPTIONS: "
        "ImproperlyConfigured: You're using the staticfiles app without having "
        "set the required STATIC_URL setting."
    )


def test_an_option_unlike_any_is_only_named() -> None:
    (message,) = messages(STORAGES=staticfiles(colour="blue"))
    assert "has 'colour'" in message.msg
    assert message.hint == "See the storage options in docs/configuration.md."


def test_setting_messages_say_what_is_used_instead() -> None:
    by_text = {
        str(message.msg)
        for message in messages(
            FRESHSTATIC={
                "POLL": 1e9,
                "DEBOUNCE": "soon",
                "STRICT": "nope",
                "DEBOUNSE": 1,
            }
        )
    }
    assert by_text == {
        "FRESHSTATIC has an unknown key 'DEBOUNSE' (did you mean 'DEBOUNCE'?).",
        "FRESHSTATIC['DEBOUNCE'] must be a number of seconds from 0 to 5, not "
        "'soon'; 0.02 is used.",
        "FRESHSTATIC['POLL'] must be True, False or a number of seconds from "
        "0.05 to 60, not 1000000000.0; 60 is used.",
        "FRESHSTATIC['STRICT'] must be True or False (or 'true', 'false', 'yes', "
        "'no', 'on', 'off', '1', '0'), not 'nope'; False is used.",
    }


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


def test_a_coding_whose_package_is_missing_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from freshstatic import compress

    real = compress.compressor
    monkeypatch.setattr(
        compress, "compressor", lambda coding: None if coding == "br" else real(coding)
    )
    with override_settings(MIDDLEWARE=["freshstatic.middleware.FreshStaticMiddleware"]):
        messages = run_checks()
    assert [message.id for message in messages] == ["freshstatic.W008"]
    assert "brotli" in messages[0].msg
