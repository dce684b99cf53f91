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
    ``size``: how many bytes are expected, if known (a file's size), so that
    a small file is read in one chunk of its own size, not a megabyte's.
    """
    hasher = hashlib.new(algorithm)
    read = stream.read
    chunk_bytes = CHUNK_BYTES if size is None else max(1, min(CHUNK_BYTES, size + 1))
    while chunk := read(chunk_bytes):
        hasher.update(chunk)
    return hasher.hexdigest()


def hash_path(path: str, algorithm: str = "sha256") -> str:
    """Return the hex digest of the file at ``path``."""
    with open(path, "rb") as stream:
        return hash_stream(stream, algorithm)
