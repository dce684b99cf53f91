"""
Warm url() against plain StaticFilesStorage and ManifestStaticFilesStorage,
measured in one run on the same tree. Usage: python benchmarks/quick_url.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FILES = 200
CALLS = 200_000


def main() -> None:
    tree = Path(tempfile.mkdtemp(prefix="freshstatic-bench-"))
    source, collected = tree / "src", tree / "collected"
    for index in range(FILES):
        path = source / f"css/{index % 10}/file{index}.css"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f".c{index} {{ color: #{os.urandom(3).hex()}; }}\n" * 300)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings

    settings.STATICFILES_DIRS = [str(source)]
    settings.STATIC_ROOT = str(collected)
    django.setup()
    from django.contrib.staticfiles.storage import (
        ManifestStaticFilesStorage,
        StaticFilesStorage,
    )
    from django.core.management import call_command

    from freshstatic.storage import FreshStaticFilesStorage

    names = [f"css/{index % 10}/file{index}.css" for index in range(FILES)]
    plain = StaticFilesStorage()
    fresh = FreshStaticFilesStorage()
    fresh.urls(names)
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
        },
    }
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = ManifestStaticFilesStorage()

    results = {}
    for label, storage in [("plain", plain), ("manifest", manifest), ("fresh", fresh)]:
        url = storage.url

        def run(url=url) -> None:  # type: ignore[no-untyped-def]
            for name in names:
                url(name)

        loops = CALLS // FILES
        best = min(timeit.repeat(run, number=loops, repeat=5))
        results[label] = best / (loops * FILES) * 1e9
    print(f"warm url(), ns per call, best of 5 ({FILES} names):")
    for label, ns in results.items():
        print(f"  {label:9} {ns:8.0f} ns   {ns / results['plain']:.2f}x plain")
    speedup = results["manifest"] / results["fresh"]
    print(f"  fresh is {speedup:.1f}x faster than Manifest")


if __name__ == "__main__":
    main()
