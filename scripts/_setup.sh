# Shared set-up for scripts/test and scripts/demo (sourced, not run).
# Installs what a fresh Debian machine lacks: python3-venv, redis-server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRESHSTATIC_VENV:-$ROOT/.venv}"
APT_UPDATED=0

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

apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
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
