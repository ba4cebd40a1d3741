"""`make run`: the embedded local stack plus the API on http://HOST:PORT (waitress)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from types import FrameType

from waitress.server import create_server

from iac.local import stack
from iac.local.http import ChaliceWsgi

# Bodies above the API's own limit (6 MiB by default) get its JSON 413; beyond this the
# server refuses to read them at all.
MAX_BODY = 64 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MLPIPE_DATA_DIR", Path.cwd() / ".mlpipe")),
    )
    parser.add_argument("--aws-port", type=int, default=None, help="embedded AWS endpoint port")
    args = parser.parse_args(argv)
    # Locally there is no API Gateway to check SigV4; Chalice warns on every request.
    warnings.filterwarnings("ignore", message=".*is not a supported in local mode.*")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        local = stack.start(args.data_dir, args.aws_port)
    except stack.DataDirInUseError as exc:
        print(f"mlpipe: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the AWS port is taken
        print(f"mlpipe: could not start the local stack: {exc}", file=sys.stderr)
        return 1
    from app import app

    try:
        server = create_server(
            ChaliceWsgi(app),
            host=args.host,
            port=args.port,
            threads=8,
            backlog=1024,
            max_request_body_size=MAX_BODY,
            ident="mlpipe",
            clear_untrusted_proxy_headers=True,
        )
    except OSError as exc:
        local.stop()
        print(f"mlpipe: could not listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def _stop(signum: int, frame: FrameType | None) -> None:
        # make forwards Ctrl-C and SIGTERM a second time: stop once, ignore the rest.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"mlpipe API on http://{args.host}:{args.port}  "
        f"(AWS endpoint {local.endpoint_url}, data {local.data_dir})",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
