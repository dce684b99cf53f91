# shellcheck shell=bash
# Shared set-up for the scripts in this folder (sourced, not run).
#
# What the scripts install, each only when it is missing, and what the machine
# needs:
#
# - The machine: Debian (12 or later) with Python 3, as root or with sudo, and
#   access to PyPI and Debian's package mirrors.
# - From Debian's packages, on the machine: python3-venv (for .venv/),
#   redis-server (the Redis tests start their own), chromium and
#   chromium-driver (about 419 MiB, for the browser tests), and debootstrap.
# - From PyPI, in .venv/ and nox's .nox/: nox, the package with its
#   dependencies (Django, watchdog, django-redis), the test tools (pytest,
#   pytest-django, coverage, gunicorn, whitenoise, selenium, hypothesis), ruff,
#   mypy and django-stubs, and for the docs session Sphinx, furo and
#   myst-parser.
# - Django 6.x needs Python 3.12 or later: scripts/trixie builds a Debian 13
#   ("trixie", Python 3.13) tree with debootstrap, once, in
#   /var/cache/freshstatic/trixie (about 1.1 GiB), with python3, python3-venv,
#   redis-server, chromium and chromium-driver, and runs the Django 6.x
#   sessions in it.
#
# apt waits for other apt or dpkg processes (an unattended upgrade, a second
# run) up to FRESHSTATIC_APT_LOCK_WAIT seconds (default 600) rather than
# failing at once on their locks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRESHSTATIC_VENV:-$ROOT/.venv}"
APT_LOCK_WAIT_SECONDS="${FRESHSTATIC_APT_LOCK_WAIT:-600}"
APT_UPDATED=0
# dpkg's own locks are waited for by apt itself (DPkg::Lock::Timeout).
APT_GET=(
    env DEBIAN_FRONTEND=noninteractive LC_ALL=C
    apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_WAIT_SECONDS"
)

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "Root is needed to run: $*" >&2
        return 1
    fi
}

# Run an apt-get command line ("$@"), retrying while another process holds
# one of apt's locks. DPkg::Lock::Timeout covers dpkg's locks only: the
# package lists' lock (apt-get update) and the download cache's lock fail at
# once, so those are retried here.
apt_waiting() {
    local log deadline=$((SECONDS + APT_LOCK_WAIT_SECONDS)) told=0
    log="$(mktemp)"
    until "$@" >"$log" 2>&1; do
        if ! grep -q "Could not get lock" "$log" || [ "$SECONDS" -ge "$deadline" ]; then
            cat "$log" >&2
            rm -f "$log"
            return 1
        fi
        if [ "$told" = 0 ]; then
            echo "Waiting for another apt process: $(grep -m1 "Could not get lock" "$log")" >&2
            told=1
        fi
        sleep 3
    done
    cat "$log"
    rm -f "$log"
}

apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        apt_waiting as_root "${APT_GET[@]}" update -qq
        APT_UPDATED=1
    fi
    apt_waiting as_root "${APT_GET[@]}" install -y -qq --no-install-recommends "$@"
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV"
        fi
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
}

ensure_browser() {
    # Debian's Chromium and its driver: the browser tests use them as they are
    # (no browser download at run time).
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        echo "Installing chromium and chromium-driver from Debian's packages..."
        apt_install chromium chromium-driver
    fi
}

ensure_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "Installing redis-server from Debian's packages..."
        apt_install redis-server
    fi
}

ensure_debootstrap() {
    if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
        echo "Installing debootstrap from Debian's packages..."
        apt_install debootstrap debian-archive-keyring
    fi
}
