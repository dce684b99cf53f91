"""Sphinx configuration for the django-freshstatic documentation.

Build: sphinx-build -W --keep-going -b html docs docs/_build/html
Nothing here imports the package: the pages are plain Markdown (MyST).
"""

from __future__ import annotations

project = "django-freshstatic"
author = "django-freshstatic contributors"
copyright = "django-freshstatic contributors"

extensions = ["myst_parser"]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Anchors for ## and ### headings, so that pages can link to one setting.
myst_heading_anchors = 3
# Definition lists, for command options.
myst_enable_extensions = ["deflist"]

html_theme = "furo"
html_title = "django-freshstatic"
