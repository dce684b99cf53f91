"""URLs where django.contrib.staticfiles' own view serves static files."""

from __future__ import annotations

from django.contrib.staticfiles.views import serve
from django.urls import re_path

urlpatterns = [re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True})]
