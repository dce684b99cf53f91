"""
``runserver`` that lets FreshStaticMiddleware serve static files.

django.contrib.staticfiles' runserver answers static requests itself, before
any middleware runs, when DEBUG is on. When FreshStaticMiddleware serves
files, this command (active when "freshstatic" is above
"django.contrib.staticfiles" in INSTALLED_APPS) hands those requests to it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.staticfiles.management.commands.runserver import (
    Command as StaticfilesRunserverCommand,
)
from django.core.handlers.wsgi import WSGIHandler

from freshstatic.conf import middleware_serves


class Command(StaticfilesRunserverCommand):
    def get_handler(self, *args: Any, **options: Any) -> WSGIHandler:
        if middleware_serves():
            options["use_static_handler"] = False
        return super().get_handler(*args, **options)
