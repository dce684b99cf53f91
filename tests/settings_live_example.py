"""
The example's production set-up (gunicorn workers, Redis, watchstatic) with
the live page on, on a copy of its static folder: benchmarks/live.py
measures edits across processes with it.
"""

import os

from example.settings_production import *  # noqa: F403

STATICFILES_DIRS = [os.environ["EXAMPLE_STATIC_DIR"]]
FRESHSTATIC = {**FRESHSTATIC, "LIVE": True}  # noqa: F405
# LIVE with DEBUG off is reported by freshstatic.W009: expected here.
SILENCED_SYSTEM_CHECKS = ["freshstatic.W009"]
