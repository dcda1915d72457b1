"""Where a live's media files go: local disk now, an object store later.

Keys are relative POSIX paths such as ``hls/<webinar id>/seg12.m4s``. Writes
are atomic (a reader never sees half a file). The local store writes from the
event loop: a 2 s segment at 6 Mbit/s is ~1.5 MB, which the page cache takes
in well under a millisecond; large reads go through the HTTP layer's file
responses, not through memory.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_.\-]+)*$")


class StorageError(ValueError):
    """A key that is not a safe relative path."""


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or ".." in key.split("/"):
        raise StorageError(f"unsafe storage key {key!r}")
    return key


class MediaStore(Protocol):
    def write(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes | None: ...

    def local_path(self, key: str) -> Path | None:
        """A file path the HTTP layer may stream from, or None if the store is not local."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None: ...


class LocalMediaStore:
    """Files under ``root`` (the settings' media folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
