"""The test matrix. `./scripts/test` runs every session below, in order.

Django 4.2 and 5.2 run with this machine's Python; Django 6.x needs Python 3.12
or later, so its sessions run in a Debian 13 tree (Python 3.13) through
scripts/trixie, which builds the tree on first use.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "docs", "tests", "coverage"]
nox.options.reuse_venv = "yes"

DJANGO_VERSIONS = {
    "4.2": "Django>=4.2,<5.0",
    "5.2": "Django>=5.2,<6.0",
    "6.0": "Django>=6.0,<6.1",
    "6.1": "Django>=6.1,<6.2",
}
# Versions whose sessions run in the Debian 13 tree, for its Python.
IN_TRIXIE = {"6.0", "6.1"}
TEST_DEPS = [
    "pytest>=8",
    "pytest-django>=4.8",
    "coverage[toml]>=7.10",
    "gunicorn>=22",
    "whitenoise>=6.6",
    "selenium>=4.20",
    "hypothesis>=6.100",
    "uvicorn>=0.30",
]
PRINT_VERSIONS = (
    "import django, platform; "
    "print('Django', django.get_version(), 'on Python', platform.python_version())"
)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(
        "-e",
        ".[redis,compression]",
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
@nox.parametrize(
    ("python", "django"),
    # python=False: no virtualenv here; scripts/trixie makes one in the tree.
    [(False if version in IN_TRIXIE else None, version) for version in DJANGO_VERSIONS],
    ids=list(DJANGO_VERSIONS),
)
def tests(session: nox.Session, django: str) -> None:
    requirements = ["-e", ".[redis,compression]", DJANGO_VERSIONS[django], *TEST_DEPS]
    pytest = ["-m", "pytest", "-W", "error::DeprecationWarning", *session.posargs]
    if django in IN_TRIXIE:
        trixie = ["scripts/trixie", "--venv", f".nox/trixie-{django}"]
        session.run(
            *trixie,
            "python",
            "-m",
            "pip",
            "install",
            "-q",
            *requirements,
            external=True,
        )
        session.run(*trixie, "python", "-c", PRINT_VERSIONS, external=True)
        session.run(*trixie, "coverage", "run", *pytest, external=True)
        return
    session.install(*requirements)
    session.run("python", "-c", PRINT_VERSIONS)
    session.run("coverage", "run", *pytest)


@nox.session
def coverage(session: nox.Session) -> None:
    session.install("coverage[toml]>=7.10")
    session.run("coverage", "combine")
    session.run("coverage", "report")
