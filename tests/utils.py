"""Test helpers that observe real services, never stand in for them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches


@contextlib.contextmanager
def redis_commands(alias: str = "default") -> Iterator[list[str]]:
    """
    The commands this thread sends to Redis through the cache ``alias``'s
    connections while inside, by name (``GET``, ``SET``...): one entry per
    round trip, a pipeline named by its first command.

    Redis stays real and answers as usual: redis-py's connections are only
    observed. What other threads send meanwhile (the rotation listener, a
    watcher, what an earlier test left running) is not counted.
    """
    cache: Any = caches[alias]
    pool = cache.client.get_client(write=True).connection_pool
    connection_class = pool.connection_class
    send = connection_class.send_packed_command
    thread = threading.current_thread()
    sent: list[str] = []

    def observed(connection: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is thread:
            sent.append(command_name(command))
        return send(connection, command, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection_class, "send_packed_command", observed)
        yield sent


def command_name(packed: str | bytes | list[bytes]) -> str:
    """The name of a packed RESP command (``*2\\r\\n$3\\r\\nGET\\r\\n...``)."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, bytes):
        data = packed
    else:
        data = b"".join(packed)
    parts = data.split(b"\r\n", 3)
    return parts[2].decode(errors="replace").upper() if len(parts) > 2 else repr(data)
