"""The example site, plus Django's static view for the plain-storage control."""

from __future__ import annotations

from django.contrib.staticfiles.views import serve
from django.urls import path, re_path
from example.views import index

urlpatterns = [
    path("", index, name="index"),
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
