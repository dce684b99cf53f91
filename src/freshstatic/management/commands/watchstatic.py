"""``manage.py watchstatic``: the watcher in the foreground."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import pluralize

from freshstatic.checks import watchstatic_messages
from freshstatic.conf import POLL_DEFAULT_SECONDS, POLL_SECONDS_RANGE
from freshstatic.management import fresh_storage
from freshstatic.signals import static_changed
from freshstatic.watcher import Watcher

SIGNAL_CHECK_SECONDS = 0.2


class Command(BaseCommand):
    help = (
        "Watch the static folders and invalidate hashes as files change, for "
        "every process sharing the cache. Prints each change and its new URL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--poll",
            nargs="?",
            type=float,
            const=POLL_DEFAULT_SECONDS,
            default=None,
            metavar="SECONDS",
            help="Poll the folders instead of waiting for native file events "
            "(Docker bind mounts, NFS); every SECONDS (default 1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        storage = fresh_storage()
        low, high = POLL_SECONDS_RANGE
        if options["poll"] is not None and not low <= options["poll"] <= high:
            raise CommandError(
                f"--poll takes a number of seconds from {low:g} to {high:g}."
            )
        for message in watchstatic_messages(
            storage.cache_alias, storage.hash_cache.is_shared()
        ):
            self.stderr.write(str(message), style_func=self.style.WARNING)

        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        def report(
            sender: object, names: tuple[str, ...] | None, **kwargs: Any
        ) -> None:
            stamp = time.strftime("%H:%M:%S")
            if not names:
                self.stdout.write(f"[{stamp}] everything invalidated")
                return
            changes = ", ".join(f"{name} -> {storage.url(name)}" for name in names)
            self.stdout.write(f"[{stamp}] {changes}")

        previous = {
            signum: signal.signal(signum, request_stop)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        static_changed.connect(report, weak=False, dispatch_uid="watchstatic-report")
        watcher = Watcher(poll=options["poll"])
        try:
            watcher.start()
            count = len(watcher.roots)
            self.stdout.write(
                f"Watching {count} static folder{pluralize(count)} "
                f"({watcher.mode}); Ctrl-C to stop."
            )
            for _prefix, root in watcher.roots:
                self.stdout.write(f"  {root}")
            # Wake up now and then: a signal delivered to another thread only
            # runs its Python handler once the main thread stirs.
            while not stopping.wait(SIGNAL_CHECK_SECONDS):
                pass
        finally:
            watcher.stop()
            static_changed.disconnect(dispatch_uid="watchstatic-report")
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write("Stopped.")
