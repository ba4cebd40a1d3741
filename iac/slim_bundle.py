"""Strip the debug symbols of the compiled extensions in a Lambda bundle (``chalice package``'s
``deployment.zip``), in place: the wheels' ``.so`` files carry symbol tables the runtime never
reads, about 10 MB of the bundle, and the bundle plus the AWS SDK for pandas layer must stay
under Lambda's 250 MB unzipped. ``strip --strip-unneeded`` is what Lambda layer builders use;
an extension it cannot handle is kept as it was. Used by deploy.sh and ``make package``.

    python -m iac.slim_bundle build/deployment.zip
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def _is_extension(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".so") or ".so." in base


def slim(bundle: Path) -> tuple[int, int]:
    """Rewrite ``bundle`` with stripped extensions; returns (bytes before, bytes after),
    unzipped. Without a ``strip`` command the bundle is left as it is."""
    strip = shutil.which("strip")
    with zipfile.ZipFile(bundle) as zf:
        infos = zf.infolist()
        before = sum(i.file_size for i in infos)
        if strip is None:
            return before, before
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "slim.zip"
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
                for info in infos:
                    data = zf.read(info)
                    if _is_extension(info.filename) and not info.is_dir():
                        data = _stripped(strip, data, Path(scratch))
                    info.file_size = len(data)
                    dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            after = sum(i.file_size for i in zipfile.ZipFile(out).infolist())
            shutil.move(str(out), bundle)
    return before, after


def _stripped(strip: str, data: bytes, scratch: Path) -> bytes:
    path = scratch / "ext.so"
    path.write_bytes(data)
    result = subprocess.run(
        [strip, "--strip-unneeded", str(path)], capture_output=True, check=False, timeout=60
    )
    return path.read_bytes() if result.returncode == 0 else data


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m iac.slim_bundle DEPLOYMENT_ZIP", file=sys.stderr)
        return 2
    before, after = slim(Path(argv[0]))
    print(f"slim_bundle: {before / 2**20:.1f} MB -> {after / 2**20:.1f} MB unzipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
