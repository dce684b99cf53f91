"""The test matrix. `./scripts/test` runs every session below, in order."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "docs", "tests", "coverage"]
nox.options.reuse_venv = "yes"

DJANGO_VERSIONS = {"4.2": "Django>=4.2,<5.0", "5.2": "Django>=5.2,<6.0"}
TEST_DEPS = [
    "pytest>=8",
    "pytest-django>=4.8",
    "coverage[toml]>=7.10",
    "gunicorn>=22",
    "whitenoise>=6.6",
    "selenium>=4.20",
    "hypothesis>=6.100",
]


@nox.session
def lint(session: nox.Session) -> None:
    session.install(
        "-e",
        ".[redis]",
        "Django>=5.2,<6.0",
        "ruff>=0.6",
        "mypy>=1.11",
        "django-stubs>=5.2",
        "pytest>=8",
    )
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("sphinx>=7", "furo>=2024.1", "myst-parser>=3")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
    )


@nox.session
@nox.parametrize("django", list(DJANGO_VERSIONS), ids=list(DJANGO_VERSIONS))
def tests(session: nox.Session, django: str) -> None:
    session.install("-e", ".[redis]", DJANGO_VERSIONS[django], *TEST_DEPS)
    session.run("python", "-c", "import django; print('Django', django.get_version())")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        "-W",
        "error::DeprecationWarning",
        *session.posargs,
    )


@nox.session
def coverage(session: nox.Session) -> None:
    session.install("coverage[toml]>=7.10")
    session.run("coverage", "combine")
    session.run("coverage", "report")
