"""The example site's settings, on a copy of its static folder."""

import os

from example.settings import *  # noqa: F403

STATICFILES_DIRS = [os.environ["EXAMPLE_STATIC_DIR"]]
