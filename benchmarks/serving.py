"""
Serving static files under load (DESIGN §5, §7): FreshStaticMiddleware beside
WhiteNoise, ServeStatic, Django's ``static.serve`` and nginx, on the same
tree, behind the same server, measured in the same run.

    python benchmarks/serving.py                  # 3 rounds of 10 s per case
    python benchmarks/serving.py --write-docs     # ...and update docs/performance.md
    python benchmarks/serving.py --seconds 3 --rounds 1 --contenders freshstatic,whitenoise
    python benchmarks/serving.py --profile profiles/   # py-spy, freshstatic and WhiteNoise

Contenders, each Django one under ``gunicorn --workers 2 --worker-class sync``:

- ``whitenoise``: WhiteNoise's production mode, ``collectstatic`` with
  ``CompressedManifestStaticFilesStorage``, the middleware directly after
  ``SecurityMiddleware`` (the reference of every ratio);
- ``whitenoise-dev``: WhiteNoise's development mode, ``WHITENOISE_USE_FINDERS``
  and ``WHITENOISE_AUTOREFRESH``, no collectstatic;
- ``servestatic``: ServeStatic's WSGI middleware around the Django
  application, after ``collectstatic`` with its ``CompressedManifestStaticFilesStorage``;
- ``django``: ``django.views.static.serve`` on the source folder;
- ``freshstatic``: FreshStaticMiddleware with its defaults, directly after
  ``SecurityMiddleware``, LocMem, ``WATCH`` False (no collectstatic);
- ``freshstatic-watch``: the same with ``WATCH`` True (a watcher per worker);
- ``nginx``: Debian's nginx serving WhiteNoise's collected folder with its
  precompressed ``.br``/``.gz`` files (``brotli_static``, ``gzip_static``),
  two worker processes: the ceiling.

Cases (each URL the one a page would use: ``?v=`` for freshstatic, the
hashed name after collectstatic):

- ``small``: Django admin's ``login.css`` (951 bytes), no Accept-Encoding;
- ``script``: 100 KiB of minified JavaScript, ``Accept-Encoding: gzip, br, zstd``;
- ``references``: admin's ``base.css`` (22 KB, ``url()`` references that
  freshstatic and the manifest storages rewrite), the same Accept-Encoding;
- ``conditional``: ``login.css`` again with ``If-None-Match`` set to the ETag
  it was served with (``If-Modified-Since`` where there is no ETag);
- ``large``: a 5 MiB JPEG (incompressible), the same Accept-Encoding.

Load: ``wrk -t2 -c16`` on 127.0.0.1, a warm-up first, then every contender
in turn for each case and round (so that noise from other work on the
machine spreads over all of them); requests/s, p99 and the CPU time the
workers spent per request (user + system, from /proc) are medians of the
rounds. Bytes on the wire: the body and headers of one response (curl).
Memory: the resident set of each worker once every round has run.

The application alone: each contender's WSGI application called in one
process, without a server or sockets (files handed to ``wsgi.file_wrapper``
are not read, as with sendfile), CPU µs per request, median of the rounds.
On a shared machine this is the steadiest figure: other work takes turns on
the cores, but not CPU time. ``--profile`` runs the same loop under py-spy
and prints each function's share of the requests' samples.

Needs wrk, nginx (with the brotli_static module when available) and curl
from Debian's packages, and gunicorn, whitenoise, servestatic, brotli and
zstandard (``scripts/bench-serving`` installs them); py-spy for ``--profile``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
DOCS_START = "<!-- serving benchmark results start -->"
DOCS_END = "<!-- serving benchmark results end -->"

WORKERS = 2
REFERENCE = "whitenoise"
ACCEPT_ENCODING = "gzip, br, zstd"
SCRIPT_BYTES = 100 * 1024
LARGE_BYTES = 5 * 1024 * 1024
START_SECONDS = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Goals (DESIGN §5, §7), against WhiteNoise's production mode.
GOAL_SMALL_RATIO = 1.0
GOAL_BROTLI_MARGIN = 1.05

SECURITY = "django.middleware.security.SecurityMiddleware"
FILES = {"BACKEND": "django.core.files.storage.FileSystemStorage"}


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    name: str
    headers: dict[str, str] = field(default_factory=dict)
    conditional: bool = False


CASES = [
    Case("small", "small CSS (951 B)", "admin/css/login.css"),
    Case(
        "script",
        "100 KiB script, Accept-Encoding",
        "bench/bundle.js",
        {"Accept-Encoding": ACCEPT_ENCODING},
    ),
    Case(
        "references",
        "stylesheet with references (22 KB), Accept-Encoding",
        "admin/css/base.css",
        {"Accept-Encoding": ACCEPT_ENCODING},
    ),
    Case(
        "conditional",
        "conditional GET of the small CSS (304)",
        "admin/css/login.css",
        conditional=True,
    ),
    Case(
        "large",
        "5 MiB JPEG, Accept-Encoding",
        "bench/large.jpg",
        {"Accept-Encoding": ACCEPT_ENCODING},
    ),
]

CONTENDERS = {
    "whitenoise": "WhiteNoise, production (collectstatic)",
    "whitenoise-dev": "WhiteNoise, development (finders + autorefresh)",
    "servestatic": "ServeStatic, WSGI (collectstatic)",
    "django": "Django's `static.serve`",
    "freshstatic": "**freshstatic** (WATCH False)",
    "freshstatic-watch": "**freshstatic** (WATCH True)",
    "nginx": "nginx (ceiling)",
}
# The contenders that serve a collected folder, and whose.
COLLECTED_BY = {
    "whitenoise": "whitenoise",
    "servestatic": "servestatic",
    "nginx": "whitenoise",
}

WSGI_MODULE = """\
import os

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
if os.environ.get("BENCH_SERVESTATIC_ROOT"):
    # ServeStatic's WSGI middleware in front of Django, as its docs set it up.
    from servestatic import ServeStatic

    application = ServeStatic(
        application, root=os.environ["BENCH_SERVESTATIC_ROOT"], prefix="static/"
    )
"""
URLS_MODULE = "urlpatterns = []\n"
URLS_SERVE_MODULE = """\
from django.urls import re_path
from django.views.static import serve

urlpatterns = [re_path(r"^static/(?P<path>.*)$", serve, {{"document_root": {root!r}}})]
"""
NGINX_CONF = """\
{load_brotli}
worker_processes {workers};
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{
            alias {root}/;
            gzip_static on;
            {brotli_static}
            gzip_vary on;
            add_header Cache-Control "public, max-age=31536000, immutable";
        }}
    }}
}}
"""
BROTLI_MODULE = Path("/usr/lib/nginx/modules/ngx_http_brotli_static_module.so")


# -- the tree ---------------------------------------------------------------------


def build_tree(static: Path) -> None:
    """The example site's files, Django admin's, and two made for the cases."""
    import django

    shutil.copytree(ROOT / "example_project" / "static", static)
    admin = Path(django.__file__).parent / "contrib/admin/static/admin"
    shutil.copytree(admin, static / "admin")
    vendor = admin / "js" / "vendor"
    minified = b"\n".join(
        (vendor / path).read_bytes()
        for path in ("jquery/jquery.min.js", "select2/select2.full.min.js")
    )
    (static / "bench").mkdir()
    (static / "bench" / "bundle.js").write_bytes(minified[:SCRIPT_BYTES])
    (static / "bench" / "large.jpg").write_bytes(
        random.Random(5).randbytes(LARGE_BYTES)
    )


# -- the sites --------------------------------------------------------------------


def settings_for(key: str, static: Path, collected: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "SECRET_KEY": "benchmarks",
        "DEBUG": False,
        "ALLOWED_HOSTS": ["127.0.0.1"],
        "DATABASES": {},
        "USE_TZ": True,
        "ROOT_URLCONF": "bench_urls",
        "INSTALLED_APPS": ["django.contrib.staticfiles"],
        "MIDDLEWARE": [SECURITY],
        "STATIC_URL": "/static/",
        "STATICFILES_DIRS": [str(static)],
        "STORAGES": {
            "default": FILES,
            "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
            },
        },
        "CACHES": {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        },
    }
    if key in ("whitenoise", "whitenoise-dev"):
        settings["MIDDLEWARE"] = [
            SECURITY,
            "whitenoise.middleware.WhiteNoiseMiddleware",
        ]
    if key == "whitenoise":
        settings["STATIC_ROOT"] = str(collected / "whitenoise")
        settings["STORAGES"]["staticfiles"] = {
            "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        }
    elif key == "whitenoise-dev":
        settings["WHITENOISE_USE_FINDERS"] = True
        settings["WHITENOISE_AUTOREFRESH"] = True
    elif key == "servestatic":
        settings["STATIC_ROOT"] = str(collected / "servestatic")
        settings["STORAGES"]["staticfiles"] = {
            "BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"
        }
    elif key == "django":
        settings["ROOT_URLCONF"] = "bench_urls_serve"
    elif key.startswith("freshstatic"):
        settings["INSTALLED_APPS"] = ["freshstatic", "django.contrib.staticfiles"]
        settings["MIDDLEWARE"] = [
            SECURITY,
            "freshstatic.middleware.FreshStaticMiddleware",
        ]
        settings["STORAGES"]["staticfiles"] = {
            "BACKEND": "freshstatic.storage.FreshStaticFilesStorage"
        }
        settings["FRESHSTATIC"] = {"WATCH": key == "freshstatic-watch"}
    return settings


def settings_module(key: str) -> str:
    return "bench_settings_" + key.replace("-", "_")


def write_site(site: Path, static: Path, collected: Path) -> None:
    """A settings module per contender, one URLconf, one WSGI module."""
    site.mkdir()
    for key in CONTENDERS:
        lines = [
            f"{name} = {value!r}"
            for name, value in settings_for(key, static, collected).items()
        ]
        (site / f"{settings_module(key)}.py").write_text("\n".join(lines) + "\n")
    (site / "bench_urls.py").write_text(URLS_MODULE)
    (site / "bench_urls_serve.py").write_text(
        URLS_SERVE_MODULE.format(root=str(static))
    )
    (site / "bench_wsgi.py").write_text(WSGI_MODULE)


def django_env(site: Path, key: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site), str(ROOT / "src"), env.get("PYTHONPATH")])
    )
    env["DJANGO_SETTINGS_MODULE"] = settings_module(key)
    env.update(extra)
    return env


def django_admin(site: Path, key: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=django_env(site, key),
        cwd=site,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{key}: django-admin {' '.join(args)}:\n{result.stderr}")
    return result.stdout


def page_urls(
    site: Path, collected: Path, keys: list[str]
) -> dict[str, dict[str, str]]:
    """The URL of each case's file that a page of each contender would use."""
    names = sorted({case.name for case in CASES})
    urls: dict[str, dict[str, str]] = {}
    fresh: dict[str, str] = {}
    if any(key.startswith("freshstatic") for key in keys):
        fresh = json.loads(
            django_admin(site, "freshstatic", "hashstatic", "--json", *names)
        )
    for key in keys:
        if key.startswith("freshstatic"):
            urls[key] = fresh
        elif key in COLLECTED_BY:
            folder = collected / COLLECTED_BY[key]
            paths = json.loads((folder / "staticfiles.json").read_text())["paths"]
            urls[key] = {name: f"/static/{paths[name]}" for name in names}
        else:
            urls[key] = {name: f"/static/{name}" for name in names}
    return urls


# -- the servers ------------------------------------------------------------------


class Server:
    """One contender's server: a process group listening on 127.0.0.1."""

    def __init__(self, key: str, args: list[str], log: Path, **popen: Any) -> None:
        self.key = key
        self.log = log
        self._stream = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            args,
            stdout=self._stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )

    def workers(self) -> list[int]:
        """The worker processes' ids (gunicorn's and nginx's alike)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        return [int(child) for child in children]

    def worker_rss_mib(self) -> list[float]:
        sizes = []
        for pid in self.workers():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def cpu_seconds(self) -> float:
        """User and system time of the workers so far."""
        total = 0
        for pid in self.workers():
            with contextlib.suppress(OSError):
                fields = (
                    Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                )
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._stream.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(key: str, workdir: Path, site: Path, collected: Path) -> tuple[Server, int]:
    port = free_port()
    log = workdir / f"{key}.log"
    if key == "nginx":
        folder = workdir / "nginx"
        folder.mkdir(exist_ok=True)
        brotli = BROTLI_MODULE.exists()
        conf = folder / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                load_brotli=f"load_module {BROTLI_MODULE};" if brotli else "",
                brotli_static="brotli_static on;" if brotli else "",
                workers=WORKERS,
                workdir=folder,
                port=port,
                root=collected / "whitenoise",
            )
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        args = [nginx, "-c", str(conf), "-p", str(folder), "-g", "daemon off;"]
        server = Server(key, args, log)
    else:
        extra = {}
        if key == "servestatic":
            extra["BENCH_SERVESTATIC_ROOT"] = str(collected / "servestatic")
        args = [
            sys.executable, "-m", "gunicorn",
            "--workers", str(WORKERS), "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "bench_wsgi:application",
        ]  # fmt: skip
        server = Server(key, args, log, cwd=site, env=django_env(site, key, **extra))
    return server, port


def wait_until_up(server: Server, url: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
                response.read()
            if len(server.workers()) >= WORKERS:
                return
        except OSError:  # not answering yet (HTTPError is one too)
            pass
        time.sleep(0.1)
    raise SystemExit(f"{server.key} did not start:\n{server.log.read_text()[-3000:]}")


@contextlib.contextmanager
def servers(
    keys: list[str],
    workdir: Path,
    site: Path,
    collected: Path,
    urls: dict[str, dict[str, str]],
) -> Iterator[dict[str, tuple[Server, int]]]:
    running: dict[str, tuple[Server, int]] = {}
    try:
        for key in keys:
            running[key] = start(key, workdir, site, collected)
        for key, (server, port) in running.items():
            wait_until_up(server, f"http://127.0.0.1:{port}{urls[key][CASES[0].name]}")
        yield running
    finally:
        for server, _port in running.values():
            server.stop()


# -- measuring ----------------------------------------------------------------------


@dataclass
class Probe:
    """One response, as curl received it (nothing decoded)."""

    status: int
    body_bytes: int
    header_bytes: int
    headers: dict[str, str]


def probe(url: str, headers: dict[str, str]) -> Probe:
    args = ["curl", "-sS", "-o", "/dev/null", "-D", "-"]  # the headers to stdout
    args += ["-w", "\n%{http_code} %{size_download} %{size_header}"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    head, _, written = output.rpartition("\n")
    status, body, header = (int(part) for part in written.split())
    received = {}
    for line in head.splitlines()[1:]:
        name, colon, value = line.partition(":")
        if colon:
            received[name.strip().lower()] = value.strip()
    return Probe(status, body, header, received)


def request_headers(case: Case, url: str) -> dict[str, str]:
    """The case's headers; for a conditional GET, the validator just served."""
    if not case.conditional:
        return dict(case.headers)
    first = probe(url, case.headers)
    if "etag" in first.headers:
        return {**case.headers, "If-None-Match": first.headers["etag"]}
    return {**case.headers, "If-Modified-Since": first.headers["last-modified"]}


@dataclass
class Run:
    requests_per_second: float
    p99_ms: float
    errors: int
    requests: int
    # CPU time (user + system) the server's workers spent per request.
    cpu_us: float = math.nan


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk(
    url: str, headers: dict[str, str], seconds: float, threads: int, connections: int
) -> Run:
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
    ]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if rate is None or p99 is None:
        raise SystemExit(f"wrk's output was not understood:\n{output}")
    errors = 0
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if bad:
        errors += int(bad[1])
    timeouts = re.search(r"timeout (\d+)", output)
    if timeouts:
        errors += int(timeouts[1])
    count = re.search(r"(\d+) requests in", output)
    return Run(
        float(rate[1]),
        float(p99[1]) * UNITS_MS[p99[2]],
        errors,
        int(count[1]) if count else 0,
    )


def loaded(
    server: Server, url: str, headers: dict[str, str], args: argparse.Namespace
) -> Run:
    """One wrk run, and the CPU time the server's workers spent on it."""
    before = server.cpu_seconds()
    run = wrk(url, headers, args.seconds, args.threads, args.connections)
    if run.requests:
        run.cpu_us = (server.cpu_seconds() - before) / run.requests * 1e6
    return run


@dataclass
class Cell:
    """One contender on one case: its response and its rounds."""

    url: str
    headers: dict[str, str]
    response: Probe
    runs: list[Run] = field(default_factory=list)
    # The application alone, called in one process: µs per request, by round.
    python_us: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(run.requests_per_second for run in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run.p99_ms for run in self.runs)

    @property
    def cpu_us(self) -> float:
        return statistics.median(run.cpu_us for run in self.runs)

    @property
    def python_median(self) -> float:
        return statistics.median(self.python_us)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)


def check_response(key: str, case: Case, response: Probe) -> list[str]:
    """What is off in a contender's response (the figures would mislead)."""
    problems = []
    expected = 304 if case.conditional else 200
    if response.status != expected:
        problems.append(f"status {response.status}, not {expected}")
    cache_control = response.headers.get("cache-control", "")
    versioned = key not in ("whitenoise-dev", "django")
    if versioned and "immutable" not in cache_control:
        problems.append(f"Cache-Control {cache_control!r} is not immutable")
    return problems


def measure(
    keys: list[str],
    cases: list[Case],
    running: dict[str, tuple[Server, int]],
    urls: dict[str, dict[str, str]],
    args: argparse.Namespace,
) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    for case in cases:
        for key in keys:
            url = f"http://127.0.0.1:{running[key][1]}{urls[key][case.name]}"
            headers = request_headers(case, url)
            response = probe(url, headers)
            for problem in check_response(key, case, response):
                print(f"  warning: {key}, {case.key}: {problem}", flush=True)
            cells[key, case.key] = Cell(url, headers, response)
            if args.warm_up > 0:
                wrk(url, headers, args.warm_up, args.threads, args.connections)
    for round_number in range(1, args.rounds + 1):
        for case in cases:
            for key in keys:
                cell = cells[key, case.key]
                run = loaded(running[key][0], cell.url, cell.headers, args)
                cell.runs.append(run)
                print(
                    f"  round {round_number} {case.key:<11} {key:<17} "
                    f"{run.requests_per_second:9.0f} req/s  p99 {run.p99_ms:8.2f} ms  "
                    f"CPU {run.cpu_us:7.0f} µs/request"
                    + (f"  {run.errors} errors" if run.errors else ""),
                    flush=True,
                )
    return cells


# -- the report ---------------------------------------------------------------------


def fmt_bytes(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / 2**20:.2f} MiB"
    if count >= 10 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count:,} B"


def results_table(
    keys: list[str], cases: list[Case], cells: dict[tuple[str, str], Cell]
) -> str:
    lines = [
        "| case | server | requests/s | p99 | worker CPU per request | application alone "
        "| body (coding) + headers | speed vs WhiteNoise: by req/s, CPU, alone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        reference = cells.get((REFERENCE, case.key))
        for key in keys:
            cell = cells[key, case.key]
            coding = cell.response.headers.get("content-encoding", "identity")
            if cell.response.status == 304:
                coding = "304"
            alone = f"{cell.python_median:.0f} µs" if cell.python_us else "—"
            ratios = "—"
            if reference is not None:
                # Each as a speed (higher is faster): CPU times inverted.
                ratios = (
                    f"{cell.rate / reference.rate:.2f}×, "
                    f"{reference.cpu_us / cell.cpu_us:.2f}×"
                )
                if cell.python_us and reference.python_us:
                    ratios += f", {reference.python_median / cell.python_median:.2f}×"
            errors = f" ({cell.errors} errors)" if cell.errors else ""
            lines.append(
                f"| {case.label} | {CONTENDERS[key]} | {cell.rate:,.0f}{errors} | "
                f"{cell.p99_ms:.1f} ms | {cell.cpu_us:,.0f} µs | {alone} | "
                f"{fmt_bytes(cell.response.body_bytes)} ({coding}) "
                f"+ {cell.response.header_bytes} B | {ratios} |"
            )
    return "\n".join(lines)


def memory_table(
    keys: list[str], before: dict[str, list[float]], after: dict[str, list[float]]
) -> str:
    lines = [
        "| server | RSS per worker, started | after every round |",
        "|---|---|---|",
    ]
    for key in keys:
        started = ", ".join(f"{size:.0f}" for size in before[key])
        ended = ", ".join(f"{size:.0f}" for size in after[key])
        lines.append(f"| {CONTENDERS[key]} | {started} MiB | {ended} MiB |")
    return "\n".join(lines)


def goals_table(cells: dict[tuple[str, str], Cell], cases: list[Case]) -> str:
    fresh, reference = "freshstatic", REFERENCE
    keys = {key for key, _case in cells}
    if fresh not in keys or reference not in keys:
        return ""
    rows = []

    def verdict(met: bool) -> str:
        return "met" if met else "**missed**"

    done = {case.key for case in cases}
    for key in ("small", "conditional"):
        if key not in done:
            continue
        ours, theirs = cells[fresh, key], cells[reference, key]
        rate = ours.rate / theirs.rate
        # Requests/s a CPU-bound server can reach: the inverse of CPU per request.
        capacity = theirs.cpu_us / ours.cpu_us
        measured = f"requests/s {rate:.2f}×; by worker CPU per request {capacity:.2f}×"
        if ours.python_us and theirs.python_us:
            measured += (
                f"; application alone {theirs.python_median / ours.python_median:.2f}×"
            )
        rows.append(
            (
                f"{'small CSS' if key == 'small' else 'conditional GET'}: requests/s vs WhiteNoise",
                measured,
                f"≥ {GOAL_SMALL_RATIO:.1f}×",
                verdict(min(rate, capacity) >= GOAL_SMALL_RATIO),
            )
        )
    if "script" in done:
        ours = cells[fresh, "script"].response
        theirs = cells[reference, "script"].response
        ratio = ours.body_bytes / theirs.body_bytes
        rows.append(
            (
                "100 KiB script: bytes on the wire",
                f"{ours.body_bytes:,} B ({ours.headers.get('content-encoding', 'identity')}) "
                f"vs {theirs.body_bytes:,} B ({theirs.headers.get('content-encoding', 'identity')}): {ratio:.3f}×",
                f"≤ {GOAL_BROTLI_MARGIN:.2f}× WhiteNoise's brotli",
                verdict(ratio <= GOAL_BROTLI_MARGIN),
            )
        )
    for case in cases:
        ours_ms, theirs_ms = (
            cells[fresh, case.key].p99_ms,
            cells[reference, case.key].p99_ms,
        )
        rows.append(
            (
                f"{case.label}: p99",
                f"{ours_ms:.1f} ms vs {theirs_ms:.1f} ms",
                "no worse than WhiteNoise",
                verdict(ours_ms <= theirs_ms),
            )
        )
    lines = ["| goal | measured | target | |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import django

    return (
        f"{cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, Django {django.get_version()}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("gunicorn", "whitenoise", "servestatic"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{package} {version(package)}")
    nginx = subprocess.run(
        ["nginx", "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    wrk_version = (
        subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        .stdout.split("[")[0]
        .strip()
    )
    return ", ".join([*parts, nginx.replace("nginx version: ", ""), wrk_version])


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def write_docs(text: str) -> None:
    content = DOCS.read_text()
    start, end = content.index(DOCS_START), content.index(DOCS_END)
    DOCS.write_text(
        content[: start + len(DOCS_START)] + "\n" + text + "\n" + content[end:]
    )
    print(f"Results written to {DOCS.relative_to(ROOT)}")


# -- the application alone ---------------------------------------------------------------


class SentFile:
    """A server's ``wsgi.file_wrapper`` with sendfile: the file's bytes go
    from the kernel to the socket without passing through Python."""

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        self.filelike.close()


def wsgi_environ(url: str, headers: dict[str, str]) -> dict[str, Any]:
    parts = urlsplit(url)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(parts.path),
        "QUERY_STRING": parts.query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": SentFile,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def call(application: Any, environ: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """One request through the WSGI application, its body consumed."""
    started: list[tuple[str, dict[str, str]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> None:
        started.append((status, {name.lower(): value for name, value in headers}))

    body = application({**environ, "wsgi.input": io.BytesIO()}, start_response)
    try:
        for _chunk in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return started[0]


def application_timings(
    spec: dict[str, Any], rounds: int, seconds: float
) -> dict[str, list[float]]:
    """
    In the process of one contender (its settings in the environment): the
    CPU µs per request of its WSGI application for each case, by round,
    each round as many requests as fit in ``seconds`` of CPU time.
    """
    from bench_wsgi import application  # type: ignore[import-not-found]

    timings: dict[str, list[float]] = {}
    for key, (url, headers, conditional) in spec.items():
        if conditional:
            _status, served = call(application, wsgi_environ(url, headers))
            if "etag" in served:
                headers = {**headers, "If-None-Match": served["etag"]}
            else:
                headers = {**headers, "If-Modified-Since": served["last-modified"]}
        environ = wsgi_environ(url, headers)
        status, _headers = call(application, environ)
        if not status.startswith("304" if conditional else "200"):
            raise SystemExit(f"{url}: {status}")
        for _ in range(200):
            call(application, environ)
        timings[key] = []
        for _ in range(rounds):
            # CPU time, not wall-clock time: other work on the machine takes
            # turns on the cores, which would count as this process's time.
            count = 0
            begun = time.process_time()
            deadline = begun + seconds
            while True:
                call(application, environ)
                count += 1
                now = time.process_time()
                if now >= deadline:
                    break
            timings[key].append((now - begun) / count * 1e6)
    return timings


def in_process_command(
    site: Path,
    key: str,
    collected: Path,
    spec: dict[str, Any],
    rounds: int,
    seconds: float,
) -> tuple[list[str], dict[str, str]]:
    extra = {"BENCH_SPEC": json.dumps(spec)}
    if key == "servestatic":
        extra["BENCH_SERVESTATIC_ROOT"] = str(collected / "servestatic")
    command = [
        sys.executable, str(Path(__file__).resolve()), "--in-process",
        "--rounds", str(rounds), "--python-seconds", str(seconds),
    ]  # fmt: skip
    return command, django_env(site, key, **extra)


def python_spec(cases: list[Case], urls: dict[str, str]) -> dict[str, Any]:
    return {
        case.key: (urls[case.name], case.headers, case.conditional) for case in cases
    }


def in_process(
    keys: list[str],
    cases: list[Case],
    cells: dict[tuple[str, str], Cell],
    site: Path,
    collected: Path,
    urls: dict[str, dict[str, str]],
    args: argparse.Namespace,
) -> None:
    for key in keys:
        if key == "nginx":
            continue
        command, env = in_process_command(
            site,
            key,
            collected,
            python_spec(cases, urls[key]),
            args.rounds,
            args.python_seconds,
        )
        result = subprocess.run(
            command,
            env=env,
            cwd=site,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"{key}, in one process:\n{result.stdout}{result.stderr}")
        for case_key, values in json.loads(result.stdout.splitlines()[-1]).items():
            cells[key, case_key].python_us = values
            print(
                f"  in one process {case_key:<11} {key:<17} "
                + ", ".join(f"{value:.0f}" for value in values)
                + " µs/request",
                flush=True,
            )


# -- profiling ------------------------------------------------------------------------


def profile(
    keys: list[str],
    cases: list[Case],
    site: Path,
    collected: Path,
    urls: dict[str, dict[str, str]],
    folder: Path,
    args: argparse.Namespace,
) -> None:
    """
    For each contender's application alone, one case at a time: its CPU µs
    per request (without the profiler), then where they go (py-spy's samples).
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for key in keys:
            output = folder / f"{key}-{case.key}.txt"
            spec = python_spec([case], urls[key])
            command, env = in_process_command(
                site, key, collected, spec, args.rounds, args.python_seconds
            )
            timed = subprocess.run(
                command,
                env=env,
                cwd=site,
                capture_output=True,
                text=True,
                timeout=3600,
                check=True,
            )
            per_request_us = statistics.median(
                json.loads(timed.stdout.splitlines()[-1])[case.key]
            )
            command, env = in_process_command(
                site, key, collected, spec, 1, args.seconds
            )
            result = subprocess.run(
                [py_spy, "record", "--rate", "1000", "--format", "raw", "--output", str(output), "--", *command],
                env=env, cwd=site, capture_output=True, text=True, timeout=3600, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(f"py-spy, {key}:\n{result.stdout}{result.stderr}")
            print(
                f"\n{CONTENDERS[key]}, {case.label}: {per_request_us:.0f} µs per request ({output})"
            )
            print(summarise(output, per_request_us))


# Where a request's time goes: each part and the functions (frame names as
# py-spy gives them) whose samples, callees included, it counts. Parts nest,
# and settings reads and is_ignored also happen inside the parts below them.
# System calls (os.open, os.readlink, os.fstat) have no frame of their own:
# their time is their caller's.
PARTS = [
    ("Django: WSGIRequest", ("WSGIRequest.__init__ (",)),
    ("Django: request_finished (response.close)", ("HttpResponseBase.close (",)),
    ("Django: SecurityMiddleware", ("SecurityMiddleware.process_response (",)),
    (
        "the static middleware",
        ("StaticMiddleware.__call__ (", "NoiseMiddleware.__call__ ("),
    ),
    ("  route", ("FreshStaticMiddleware.route (",)),
    ("  hash_cache.refresh", ("refresh (freshstatic/cache",)),
    ("  request.GET (the ?v= query)", ("WSGIRequest.GET (",)),
    (
        "  settings read (conf, middleware_serves)",
        ("read_setting (", "middleware_serves ("),
    ),
    ("  is_ignored", ("ServedFiles.is_ignored (",)),
    ("  ServedFiles.open", ("ServedFiles.open (",)),
    ("    resolve/source", ("ServedFiles.resolve (",)),
    ("    allowed_roots", ("allowed_roots (",)),
    ("    open_within", ("open_within (",)),
    ("    _served (fstat, digest lookup)", ("ServedFiles._served (",)),
    ("      _local (digest lookup)", ("ServedFiles._local (",)),
    ("      shared_key", ("ServedFiles.shared_key (",)),
    ("  respond", ("FreshStaticMiddleware.respond (",)),
    ("    get_conditional_response", ("get_conditional_response (",)),
    ("    coding negotiation", ("available (freshstatic", "negotiate (freshstatic")),
    ("    the response object", ("_in_memory (", "_from_file (")),
    ("    headers", ("FreshStaticMiddleware.headers_for (",)),
    ("      patch_cache_control", ("patch_cache_control (",)),
    ("      quote_etag, http_date", ("quote_etag (", "http_date (")),
]


def summarise(path: Path, per_request_us: float, top: int = 30) -> str:
    """
    Each part's share of the requests' samples (and its µs per request), then
    the functions with the largest shares, with and without what they call.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        marks = [
            index for index, frame in enumerate(frames) if frame.startswith("call (")
        ]
        if not marks:
            continue  # start-up, not a request
        frames = frames[marks[0] + 1 :]
        count = int(count_text)
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1] if frames else "call"] += count
        joined = ";".join(frames)
        for label, names in PARTS:
            if any(name in joined for name in names):
                parts[label] += count
    if not total:
        return "  (no samples: py-spy needs ptrace, e.g. root or CAP_SYS_PTRACE)"
    lines = [f"  {total:,} samples in requests; where the time goes:"]
    lines += [
        f"  {100 * parts[label] / total:5.1f} % {per_request_us * parts[label] / total:6.1f} µs  {label}"
        for label, _names in PARTS
        if parts[label]
    ]
    lines.append("  functions, share with callees / own:")
    lines += [
        f"  {100 * count / total:5.1f} % {100 * own[frame] / total:5.1f} %  {frame}"
        for frame, count in inclusive.most_common(top)
    ]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument(
        "--warm-up", type=float, default=2.0, help="s of load before the rounds"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument(
        "--python-seconds", type=float, default=1.0,
        help="each round of the application alone, in one process",
    )  # fmt: skip
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS),
        help="comma-separated, of: " + ", ".join(CONTENDERS),
    )  # fmt: skip
    parser.add_argument(
        "--cases", default=",".join(case.key for case in CASES),
        help="comma-separated, of: " + ", ".join(case.key for case in CASES),
    )  # fmt: skip
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--profile", type=Path, metavar="FOLDER",
        help="instead: the application alone, timed, then --seconds under py-spy "
        "(freshstatic and WhiteNoise unless --contenders, small and conditional "
        "unless --cases); the samples are kept in FOLDER",
    )  # fmt: skip
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # On SIGTERM too, stop the servers and remove the tree on the way out.
    signal.signal(signal.SIGTERM, _interrupted)
    if args.in_process:  # the child that times one contender's application
        timings = application_timings(
            json.loads(os.environ["BENCH_SPEC"]), args.rounds, args.python_seconds
        )
        print(json.dumps(timings))
        return
    if args.profile:
        if args.contenders == parser.get_default("contenders"):
            args.contenders = "freshstatic,whitenoise"
        if args.cases == parser.get_default("cases"):
            args.cases = "small,conditional"
    keys = [key for key in args.contenders.split(",") if key]
    unknown = set(keys) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders: {', '.join(sorted(unknown))}")
    if args.profile and "nginx" in keys:
        raise SystemExit("nginx runs no Python to profile")
    cases = [case for case in CASES if case.key in args.cases.split(",")]
    tools = ["curl", "wrk", *(["nginx"] if "nginx" in keys else [])]
    for tool in [] if args.profile else tools:
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} is not installed (scripts/bench-serving installs it)"
            )

    workdir = Path(tempfile.mkdtemp(prefix="freshstatic-serving-"))
    workdir.chmod(0o755)  # nginx's workers run as another user
    try:
        static = workdir / "static"  # the source folder: finders serve it
        collected = workdir / "collected"  # STATIC_ROOT of each collectstatic
        site = workdir / "site"  # the settings, URLconf and WSGI modules
        build_tree(static)
        write_site(site, static, collected)
        for key in sorted({COLLECTED_BY[key] for key in keys if key in COLLECTED_BY}):
            print(f"collectstatic for {key}...", flush=True)
            django_admin(site, key, "collectstatic", "--noinput", "-v0")
        urls = page_urls(site, collected, keys)
        if args.profile:
            profile(keys, cases, site, collected, urls, args.profile, args)
            return
        load_before = load_average()
        print(f"Load average before: {load_before}", flush=True)
        started = time.monotonic()
        with servers(keys, workdir, site, collected, urls) as running:
            before = {key: running[key][0].worker_rss_mib() for key in keys}
            cells = measure(keys, cases, running, urls, args)
            after = {key: running[key][0].worker_rss_mib() for key in keys}
        in_process(keys, cases, cells, site, collected, urls, args)
        elapsed = time.monotonic() - started
        report = "\n\n".join(
            part
            for part in (
                f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; {versions()}. "
                f"`wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s --latency` "
                f"on 127.0.0.1, on the same {os.cpu_count()} cores as the servers, while other "
                f"work ran on the machine (load average {load_before} before, "
                f"{load_average()} after); medians of {args.rounds} rounds, "
                f"{elapsed / 60:.1f} minutes in all.",
                results_table(keys, cases, cells),
                memory_table(keys, before, after),
                goals_table(cells, cases),
            )
            if part
        )
        print()
        print(report)
        if args.write_docs:
            write_docs(report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
