"""`make run`: the embedded local stack plus the Chalice API on http://HOST:PORT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from types import FrameType

from chalice.config import Config
from chalice.local import LocalDevServer, create_local_server

from iac.local import stack


def build_server(host: str, port: int) -> LocalDevServer:
    from app import app

    config = Config.create(chalice_stage="local", app_name=app.app_name)
    return create_local_server(app, config, host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MLPIPE_DATA_DIR", Path.cwd() / ".mlpipe")),
    )
    args = parser.parse_args(argv)
    # Locally there is no API Gateway to check SigV4; Chalice warns on every request.
    warnings.filterwarnings("ignore", message=".*is not a supported in local mode.*")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    local = stack.start(args.data_dir)
    server = build_server(args.host, args.port)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"mlpipe API on http://{args.host}:{args.port}  (data: {local.data_dir})", flush=True)
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()
        local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
