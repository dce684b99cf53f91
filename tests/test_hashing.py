from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from freshstatic.hashing import CHUNK_BYTES, hash_path, hash_stream


class RecordingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(-1 if size is None else size)
        return super().read(size)


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, CHUNK_BYTES * 3 + 17])
def test_stream_hash_matches_hashlib(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    stream = RecordingStream(data)
    assert hash_stream(stream) == hashlib.sha256(data).hexdigest()
    # Streamed in bounded chunks: memory does not grow with the file.
    assert stream.sizes
    assert all(0 < size <= CHUNK_BYTES for size in stream.sizes)


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5", "blake2b", "sha3_256"])
def test_path_hash_with_any_algorithm(tmp_path: Path, algorithm: str) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"payload")
    assert (
        hash_path(str(path), algorithm)
        == hashlib.new(algorithm, b"payload").hexdigest()
    )
