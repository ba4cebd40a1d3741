"""The object store on local files: ``file://`` URIs under a root directory, the same keys
as on S3; writes are atomic renames, and a failed write leaves no temporary file behind."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from chalicelib.errors import InsufficientStorageError, NotFoundError
from chalicelib.ports import check_key


class FileObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_of(self, uri: str) -> str:
        prefix = self.root.as_uri() + "/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not in this object store")
        # uri() percent-encodes the key (Path.as_uri); undo it so key_of(uri(k)) == k.
        return check_key(unquote(uri[len(prefix) :]))

    def _write_atomically(self, key: str, write: Callable[[str], None]) -> str:
        """Write to a temporary file beside the target, then rename it into place. On any
        failure the temporary file is removed; a full disk is a clear error, not a 500."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:
            raise _storage_error(exc) from None
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise _storage_error(exc) from None
            raise
        return path.as_uri()

    def put_bytes(self, key: str, data: bytes) -> str:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                fh.write(data)

        return self._write_atomically(key, write)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"object {key!r} not found") from None

    def put_file(self, key: str, path: Path) -> str:
        def write(tmp: str) -> None:
            shutil.copyfile(path, tmp)

        return self._write_atomically(key, write)

    def get_file(self, key: str, dest: Path) -> Path:
        src = self._path(key)
        if not src.is_file():
            raise NotFoundError(f"object {key!r} not found")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        keys = [
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        ]
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        target = self._path(prefix.rstrip("/"))
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorageError("the server's disk is full; nothing was stored")
    return exc
