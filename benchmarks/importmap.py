"""
What the module tags cost to render (DESIGN §9; goal: ``{% importmap %}`` for
500 modules in under 50 µs once warm), each beside a peer measured in the
same run:

- ``{% importmap %}``, warm: against rendering the same map with Django's
  ``json_script`` filter (a hand-made import map, rebuilt on each render),
  and against one ``{% static %}`` tag;
- ``{% importmap %}``, cold (the first render after a change: every module
  listed, hashed and, with integrity, read once);
- ``{% modulepreload %}`` of a module that imports 20 others, and
  ``{% script %}``, warm.

    python benchmarks/importmap.py [--modules 500] [--rounds 7]

Integrity is on (DEBUG off). Each warm figure is the median over rounds of
the mean of many renders.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

BARE_SPECIFIERS = 10
PRELOAD_IMPORTS = 20


def build_modules(root: Path, count: int, seed: int = 500) -> list[str]:
    """``count`` modules of about 2 KB in 10 folders, each importing two
    others by relative URL (but the first PRELOAD_IMPORTS, which import
    nothing); returns their names."""
    rng = random.Random(seed)
    names = [f"js/d{index % 10}/m{index}.js" for index in range(count)]
    for index, name in enumerate(names):
        imports = [
            f'import {{ v{other} }} from "../d{other % 10}/m{other}.js";\n'
            for other in rng.sample(range(count), 2)
            if other != index and index >= PRELOAD_IMPORTS
        ]
        body = "".join(imports) + f"export const v{index} = {index};\n"
        body += f"// {rng.randbytes(900).hex()}\n"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    # One module importing PRELOAD_IMPORTS others, for {% modulepreload %}.
    entry = "".join(
        f'import "./d{index % 10}/m{index}.js";\n' for index in range(PRELOAD_IMPORTS)
    )
    (root / "js" / "entry.js").write_text(entry)
    return names


def configure(source: Path, names: list[str]) -> None:
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmarks",
        INSTALLED_APPS=["freshstatic", "django.contrib.staticfiles"],
        DATABASES={},
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        },
        STATIC_URL="/static/",
        STATIC_ROOT=None,
        STATICFILES_DIRS=[str(source)],
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "freshstatic.storage.FreshStaticFilesStorage"},
        },
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        FRESHSTATIC={
            "WATCH": False,
            "IMPORTMAP": {
                f"package-{index}": names[index] for index in range(BARE_SPECIFIERS)
            },
        },
        LOGGING_CONFIG=None,
    )
    import django

    django.setup()


def warm_microseconds(render: Callable[[], object], rounds: int) -> float:
    """Median over ``rounds`` of the mean time of one render, in µs."""
    render()
    started = time.perf_counter()
    render()
    once = max(time.perf_counter() - started, 1e-7)
    loops = max(10, min(100_000, int(0.2 / once)))
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(loops):
            render()
        samples.append((time.perf_counter() - started) / loops)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modules", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="freshstatic-importmap-") as folder:
        source = Path(folder)
        names = build_modules(source, args.modules)
        configure(source, names)

        import json

        from django.template import Context, Template

        import freshstatic
        from freshstatic.templatetags.freshstatic import _page

        context = Context({"csp_nonce": "bench"})
        importmap = Template("{% load freshstatic %}{% importmap %}")

        def render_importmap() -> str:
            return importmap.render(context)

        # Cold: the first render after an invalidation (and, for the peer
        # below, the map itself).
        cold = []
        for _ in range(3):
            freshstatic.invalidate()
            started = time.perf_counter()
            html = render_importmap()
            cold.append(time.perf_counter() - started)
        entries = html.count('":"/static/')
        the_map: Any = json.loads(_page().import_map_json())

        hand_made = Template('{{ the_map|json_script:"importmap" }}')
        hand_context = Context({"the_map": the_map})
        static = Template("{% load static %}{% static 'js/d0/m0.js' %}")
        preload = Template('{% load freshstatic %}{% modulepreload "js/entry.js" %}')
        script = Template('{% load freshstatic %}{% script "js/entry.js" module %}')

        figures = {
            "importmap": warm_microseconds(render_importmap, args.rounds),
            "json_script": warm_microseconds(
                lambda: hand_made.render(hand_context), args.rounds
            ),
            "static": warm_microseconds(lambda: static.render(context), args.rounds),
            "modulepreload": warm_microseconds(
                lambda: preload.render(context), args.rounds
            ),
            "script": warm_microseconds(lambda: script.render(context), args.rounds),
        }
        preloads = preload.render(context).count("<link")

    def ratio(name: str, peer: str) -> str:
        return f"{figures[name] / figures[peer]:.2f}×"

    print(
        f"{args.modules} modules, {BARE_SPECIFIERS} bare specifiers: an import map "
        f"of {entries} entries, {len(html) / 1024:.0f} KiB with integrity"
    )
    print()
    print("| figure | time | against |")
    print("| --- | --- | --- |")
    print(
        f"| `{{% importmap %}}`, warm | {figures['importmap']:.1f} µs | "
        f"{ratio('importmap', 'json_script')} `json_script` of the same map "
        f"({figures['json_script']:.0f} µs), "
        f"{ratio('importmap', 'static')} one `{{% static %}}` "
        f"({figures['static']:.1f} µs) |"
    )
    print(
        f"| `{{% importmap %}}`, cold (after a change) | "
        f"{statistics.median(cold) * 1e3:.0f} ms | every module listed, hashed "
        "and read once for its integrity |"
    )
    print(
        f"| `{{% modulepreload %}}`, {preloads} modules, warm | "
        f"{figures['modulepreload']:.1f} µs | "
        f"{ratio('modulepreload', 'static')} one `{{% static %}}` |"
    )
    print(
        f"| `{{% script ... module %}}`, warm | {figures['script']:.1f} µs | "
        f"{ratio('script', 'static')} one `{{% static %}}` |"
    )


if __name__ == "__main__":
    main()
