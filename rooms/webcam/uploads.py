"""Receiving an upload body to disk with its size limit enforced while reading.

The body is the raw file (``POST`` with the file as body, no multipart): it
is streamed chunk by chunk into a temporary file beside its final place,
hashed on the way, and never held in memory. The file type is told from the
first bytes (:func:`rooms.webcam.content_limits.sniff`); from then on the
type's limit applies: a declared ``Content-Length`` above it is refused before
reading, a body that grows past it is refused the moment it does. Nothing
beyond :data:`~rooms.webcam.content_limits.UPLOAD_CEILING` is ever read.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from rooms.webcam.content_limits import (
    SNIFF_BYTES,
    UPLOAD_CEILING,
    ContentRefused,
    FileType,
    in_mb,
    sniff,
)


@dataclass(frozen=True)
class Received:
    path: Path
    """The temporary file (the caller moves or deletes it)."""
    file_type: FileType
    size: int
    sha256: str


async def receive(chunks: AsyncIterator[bytes], folder: Path, declared_length: int | None,
                  limit_for: Callable[[FileType], int]) -> Received:
    """Write the body into a new temporary file in ``folder``; ``limit_for`` gives the
    largest size accepted for the sniffed type (bytes). Raises :class:`ContentRefused`
    (``too_large`` 413, ``unknown_type`` 415, ``empty`` 422); the partial file is removed."""
    if declared_length is not None and declared_length > UPLOAD_CEILING:
        raise ContentRefused("too_large", 413, max_mb=in_mb(UPLOAD_CEILING))
    stream = aiter(chunks)
    head = b""
    async for chunk in stream:  # the first bytes, enough to tell the type
        head += chunk
        if len(head) >= SNIFF_BYTES:
            break
    if not head:
        raise ContentRefused("empty")
    file_type = sniff(head[:SNIFF_BYTES])
    if file_type is None:
        raise ContentRefused("unknown_type", 415)
    limit = limit_for(file_type)
    if declared_length is not None and declared_length > limit:
        raise ContentRefused("too_large", 413, max_mb=in_mb(limit))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".upload-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    size = 0
    try:
        # Plain writes of <= 64 kB chunks from the loop: the page cache takes them in
        # microseconds (as player/storage.py does for segments).
        with open(path, "wb") as fh:  # noqa: ASYNC230
            chunk = head
            while True:
                size += len(chunk)
                if size > limit:
                    raise ContentRefused("too_large", 413, max_mb=in_mb(limit))
                digest.update(chunk)
                fh.write(chunk)
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    break
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Received(path, file_type, size, digest.hexdigest())


async def drain(chunks: AsyncIterator[bytes], budget: int = UPLOAD_CEILING) -> int:
    """Read and drop what is left of a refused body, at most ``budget`` bytes, so a browser
    gets the refusal instead of a broken connection; returns the bytes read."""
    read = 0
    async for chunk in chunks:
        read += len(chunk)
        if read > budget:
            break
    return read


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
