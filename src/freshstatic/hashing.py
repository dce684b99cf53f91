"""Pure content hashing: a stream or a path in, a hex digest out."""

from __future__ import annotations

import hashlib
from typing import IO

# Large enough that the per-chunk overhead vanishes next to the hashing,
# small enough that hashing any file runs in constant memory.
CHUNK_BYTES = 1024 * 1024


def hash_stream(
    stream: IO[bytes], algorithm: str = "sha256", size: int | None = None
) -> str:
    """
    Return the hex digest of everything left in ``stream``, read in chunks.
    ``size``: the size of the regular file ``stream`` reads, if known, so
    that a small file is read in one chunk of its own size, not a
    megabyte's, and a short read is taken for its end (as it is for a
    regular file) instead of reading once more to find it.
    """
    hasher = hashlib.new(algorithm)
    read = stream.read
    if size is None:
        while chunk := read(CHUNK_BYTES):
            hasher.update(chunk)
        return hasher.hexdigest()
    chunk_bytes = max(1, min(CHUNK_BYTES, size + 1))
    while chunk := read(chunk_bytes):
        hasher.update(chunk)
        if len(chunk) < chunk_bytes:
            break
    return hasher.hexdigest()


def hash_path(path: str, algorithm: str = "sha256") -> str:
    """Return the hex digest of the file at ``path``."""
    with open(path, "rb") as stream:
        return hash_stream(stream, algorithm)
