"""Pure content hashing: a stream or a path in, a hex digest out."""

from __future__ import annotations

import hashlib
from typing import IO

# Large enough that the per-chunk overhead vanishes next to the hashing,
# small enough that hashing any file runs in constant memory.
CHUNK_BYTES = 1024 * 1024


def hash_stream(stream: IO[bytes], algorithm: str = "sha256") -> str:
    """Return the hex digest of everything left in ``stream``, read in chunks."""
    hasher = hashlib.new(algorithm)
    read = stream.read
    while chunk := read(CHUNK_BYTES):
        hasher.update(chunk)
    return hasher.hexdigest()


def hash_path(path: str, algorithm: str = "sha256") -> str:
    """Return the hex digest of the file at ``path``."""
    with open(path, "rb") as stream:
        return hash_stream(stream, algorithm)
