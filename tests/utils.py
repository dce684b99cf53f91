"""Test helpers that observe real services, never stand in for them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches

ROOT = Path(__file__).resolve().parent.parent


def sha(data: bytes, length: int = 12) -> str:
    return hashlib.sha256(data).hexdigest()[:length]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate, timeout: float = 20.0, interval: float = 0.02, message: str = ""
):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout}s waiting for {message or predicate}"
            )
        time.sleep(interval)


class StaticTree:
    """Real folders on disk wired in as STATICFILES_DIRS (one plain, one prefixed)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.plain = base / "static"
        self.prefixed = base / "vendor-src"
        self.plain.mkdir()
        self.prefixed.mkdir()

    def path(self, name: str) -> Path:
        if name.startswith("vendor/"):
            return self.prefixed / name.removeprefix("vendor/")
        return self.plain / name

    def write(self, name: str, data: bytes) -> Path:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


class RedisServer:
    """A real redis-server on a free loopback port, stoppable mid-test."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/test installs it)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, message="redis-server to answer PING")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> Any:
        """Run a command on one long-lived connection (so it adds no others)."""
        import redis

        if self._client is None:
            self._client = redis.Redis(host="127.0.0.1", port=self.port)
        return self._client.execute_command(*args)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # each process says which it uses
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )
    env.update(extra)
    return env


APP_CSS_BYTES = (ROOT / "tests/testapp/static/testapp/css/app.css").read_bytes()


EXAMPLE = ROOT / "example_project"

# The package's own static files (the live page's script), found by the
# app-directories finder beside the test app's.
PACKAGE_STATIC = ROOT / "src" / "freshstatic" / "static"
PACKAGE_STATIC_NAMES = sorted(
    path.relative_to(PACKAGE_STATIC).as_posix()
    for path in PACKAGE_STATIC.rglob("*")
    if path.is_file()
)


def package_static_urls() -> dict[str, str]:
    """The URL of each of the package's own static files (served as they are)."""
    return {
        name: f"/static/{name}?v={sha((PACKAGE_STATIC / name).read_bytes())}"
        for name in PACKAGE_STATIC_NAMES
    }


def fetch(url: str) -> str | None:
    """GET a loopback URL; None while the server is not answering."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            return str(response.read().decode())
    except OSError:
        return None


class ServerProcess:
    """A real server (or command) subprocess in its own process group."""

    def __init__(self, args: list[str], log: Path, **popen: Any) -> None:
        self.log = log
        self._stream = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            args,
            stdout=self._stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_output(self, text: str, timeout: float = 60.0) -> None:
        wait_for(
            lambda: text in self.output() or self.process.poll() is not None,
            timeout=timeout,
            message=f"{text!r} in the output",
        )
        assert text in self.output(), self.output()

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.process.wait(timeout=30)
        # Children (the autoreloader's child, gunicorn workers) go too.
        self.signal_group(signal.SIGKILL)
        self._stream.close()
        return int(self.process.returncode)


def copy_example_static(destination: Path) -> Path:
    target = destination / "example-static"
    shutil.copytree(EXAMPLE / "static", target)
    return target


def page_hashes(html: str) -> dict[str, str]:
    import re

    return dict(re.findall(r'(?:href|src)="/static/([^"?]+)\?v=([0-9a-f]+)"', html))


def page_pid(html: str) -> int:
    import re

    match = re.search(r"Rendered by process (\d+)", html)
    assert match, html
    return int(match[1])


_AUDIT_SINKS: list[list[str]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event != "open" or not _AUDIT_SINKS or not isinstance(args[0], (str, bytes)):
        return
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    if flags & getattr(os, "O_PATH", 0):
        return  # an O_PATH descriptor: it can neither read nor block
    path = os.fsdecode(args[0])
    if path.startswith("/proc/self/fd/"):
        path = os.readlink(path)  # the file actually about to be opened
    for sink in _AUDIT_SINKS:
        sink.append(path)


sys.addaudithook(_audit)  # a real audit hook: every file this process opens


def run_python(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run this Python with ``args`` in the repository, environment ``env``."""
    return subprocess.run(
        [sys.executable, *args],
        env=subprocess_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def gunicorn(log_dir: Path, port: int, *args: str, **env: str) -> ServerProcess:
    """The example site under a real gunicorn on 127.0.0.1:``port``."""
    return ServerProcess(
        [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--chdir", str(EXAMPLE), *args, "example.wsgi",
        ],
        log_dir / "gunicorn.log",
        cwd=EXAMPLE,
        env=subprocess_env(**env),
    )  # fmt: skip


def production_example(
    redis_server: RedisServer, tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """A copy of the example's static files, and the environment that runs
    the example's production settings on it against an empty Redis."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.command("FLUSHALL")
    static = copy_example_static(tmp_path)
    return static, {
        "DJANGO_SETTINGS_MODULE": "tests.settings_example_production",
        "EXAMPLE_STATIC_DIR": str(static),
        "REDIS_URL": redis_server.url,
    }


@contextlib.contextmanager
def redis_commands(alias: str = "default") -> Iterator[list[str]]:
    """
    The commands this thread sends to Redis through the cache ``alias``'s
    connections while inside, by name (``GET``, ``SET``...): one entry per
    round trip, a pipeline named by its first command.

    Redis stays real and answers as usual: redis-py's connections are only
    observed. What other threads send meanwhile (the rotation listener, a
    watcher, what an earlier test left running) is not counted.
    """
    cache: Any = caches[alias]
    pool = cache.client.get_client(write=True).connection_pool
    connection_class = pool.connection_class
    send = connection_class.send_packed_command
    thread = threading.current_thread()
    sent: list[str] = []

    def observed(connection: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is thread:
            sent.append(command_name(command))
        return send(connection, command, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection_class, "send_packed_command", observed)
        yield sent


def command_name(packed: str | bytes | list[bytes]) -> str:
    """The name of a packed RESP command (``*2\\r\\n$3\\r\\nGET\\r\\n...``)."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, bytes):
        data = packed
    else:
        data = b"".join(packed)
    parts = data.split(b"\r\n", 3)
    return parts[2].decode(errors="replace").upper() if len(parts) > 2 else repr(data)
