"""``model.tar.gz``: what is inside, and how to read it without trusting it.

Members are found with or without a leading ``./`` (``tar -C dir .`` writes them that way,
our packer does not); extraction refuses absolute paths, ``..``, links and special files.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CODE_DIR = "code"


class ArchiveError(ValueError):
    """The archive is unreadable, unsafe, or lacks what a model archive must hold."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_name(name: str) -> str:
    """``./metadata.json`` and ``metadata.json`` are the same member."""
    while name.startswith("./"):
        name = name[2:]
    return name


def read_metadata(archive: Path) -> dict[str, Any]:
    """metadata.json, streamed: nothing is unpickled and model.joblib is not decompressed
    when metadata.json comes first (our packer writes members in name order)."""
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                if member_name(member.name) == METADATA_FILE and member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        data = json.loads(fh.read())
                        if isinstance(data, dict):
                            return data
                        raise ArchiveError("metadata.json is not a JSON object")
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"the model archive is unreadable: {exc}") from None
    raise ArchiveError("the model archive has no metadata.json")


def safe_extract(archive: Path, destination: Path) -> Path:
    """Extract into ``destination`` (created), refusing anything that could land outside it
    or is not a plain file or directory. Returns ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise ArchiveError(f"the model archive has an unsafe path {member.name!r}")
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(
                        f"the model archive member {member.name!r} is a link or special file"
                    )
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+/3.11.4+: defence in depth
                tar.extractall(destination, members=members, filter="data")
            else:
                tar.extractall(destination, members=members)  # noqa: S202 - checked above
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"could not extract {archive.name}: {exc}") from None
    return destination
