"""``manage.py hashstatic``: print hashed URLs, warm the cache, rotate it."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.cache import InvalidCacheBackendError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import pluralize

from freshstatic import locations
from freshstatic.cache import invalidate
from freshstatic.checks import hashstatic_messages
from freshstatic.management import fresh_storage

PROGRESS_BAR_WIDTH = 40


class Command(BaseCommand):
    help = (
        "Print the hashed URL of each static file named, like findstatic. "
        "--all hashes every static file into the cache, --rotate invalidates "
        "every hash, --json prints a name -> URL manifest."
    )
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="Static names.")
        parser.add_argument(
            "--all",
            action="store_true",
            help="Hash every static file into the cache (a warm-up).",
        )
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="Invalidate every hash, in every process sharing the cache "
            "(before --all, if both are given).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print a JSON object mapping each name to its URL (every static "
            "file when no NAME is given).",
        )
        parser.add_argument(
            "--prune-versions",
            action="store_true",
            help="Prune the version store (FRESHSTATIC['VERSIONS']) to its "
            "bounds: versions unused for MAX_AGE, then the least recently used "
            "beyond MAX_BYTES.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="Hashing workers (default: one per CPU core): processes for "
            "many files where the system allows, else threads.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["prune_versions"]:
            self._prune_versions()
            if not (options["names"] or options["all"] or options["rotate"]):
                return
        storage = fresh_storage()
        names: list[str] = options["names"]
        # With --json the output is the point, not the warm-up.
        warm = options["all"] and not options["json"]
        if options["rotate"] or warm:
            try:
                shared = storage.hash_cache.is_shared()
            except InvalidCacheBackendError as exc:
                # Nothing to rotate or warm up (check freshstatic.E002).
                raise CommandError(
                    f"{exc} (the storage's cache_alias is not in CACHES)."
                ) from exc
            for message in hashstatic_messages(
                storage.cache_alias, shared, rotate=options["rotate"], warm=warm
            ):
                self.stderr.write(str(message), style_func=self.style.WARNING)
        if options["rotate"]:
            invalidate()
            if not options["json"]:
                self.stdout.write(
                    "Rotated the hash generation: every hash is recomputed on next use."
                )
        listed = locations.Listing()
        if options["all"] or (options["json"] and not names):
            listed = locations.list_files(storage)
            names = [*names, *listed.paths]
        elif not names:
            if options["rotate"]:
                return
            raise CommandError(
                "Name at least one static file, or use --all or --rotate."
            )

        started = time.perf_counter()
        urls: dict[str, str | None]
        progress = self._progress(len(names)) if options["all"] else None
        if options["all"] and not options["json"]:
            # A warm-up: the hashes go to the cache, no URL is printed.
            urls = storage.hash_names(
                names,
                workers=options["workers"],
                progress=progress,
                paths=listed.paths,
                inodes=listed.inodes,
            )
        else:
            urls = storage.urls(
                names,
                workers=options["workers"],
                progress=progress,
                paths=listed.paths,
                inodes=listed.inodes,
            )
        elapsed = time.perf_counter() - started
        missing = [name for name, url in urls.items() if url is None]
        for name in missing:
            self.stderr.write(f"No matching file found for {name!r}.")

        if options["json"]:
            manifest = {name: url for name, url in urls.items() if url is not None}
            self.stdout.write(json.dumps(manifest, indent=2, sort_keys=True))
        elif options["all"]:
            hashed = len(urls) - len(missing)
            self.stdout.write(
                f"Hashed {hashed} static file{pluralize(hashed)} in {elapsed:.2f} s."
            )
        else:
            for name, url in urls.items():
                if url is not None:
                    self.stdout.write(f"{name}: {url}")
        if missing:
            raise CommandError(
                f"{len(missing)} of {len(urls)} name{pluralize(len(urls))} could "
                "not be found."
            )

    def _prune_versions(self) -> None:
        from freshstatic.versions import configured_store

        store = configured_store()
        if store is None:
            raise CommandError(
                "FRESHSTATIC['VERSIONS'] names no version store to prune."
            )
        pruned = store.prune()
        self.stdout.write(
            f"Pruned the version store {store.path}: removed {pruned.removed} "
            f"file{pluralize(pruned.removed)} ({pruned.removed_bytes} bytes), kept "
            f"{pruned.kept} file{pluralize(pruned.kept)} ({pruned.kept_bytes} bytes)."
        )

    def _progress(self, total: int) -> Any:
        """A progress bar on a terminal; plain output stays free of it."""
        stream = self.stdout
        if total == 0 or not stream.isatty():
            return None
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            filled = PROGRESS_BAR_WIDTH * done // total
            bar = "#" * filled + "-" * (PROGRESS_BAR_WIDTH - filled)
            stream.write(f"\r[{bar}] {done}/{total}", ending="")
            if done >= total:
                stream.write("")
            stream.flush()

        return advance
