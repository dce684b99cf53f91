import os

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    # The process id shows which server process rendered the page.
    return render(request, "index.html", {"pid": os.getpid()})
