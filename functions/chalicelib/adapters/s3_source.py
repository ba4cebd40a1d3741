"""Reading a user's S3 data (``s3`` dataset sources) through awswrangler (the AWS SDK for
pandas; on AWS from its Lambda layer). Locally the session points at the embedded stack's
S3 (its moto server). Each call here is granted in iac/template.yaml (iac/iam_check.py maps
the awswrangler functions to their S3 actions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


class S3NotFoundError(Exception):
    """No object at the URI, or none under the prefix."""


class S3Reader:
    def __init__(self, session: Any, endpoint_url: str | None = None) -> None:
        self.session = session  # a boto3 Session (awswrangler takes sessions, not clients)
        self.endpoint_url = endpoint_url

    def _wr(self) -> Any:
        import awswrangler as wr

        # awswrangler's endpoint is process-wide configuration: None on AWS, the embedded
        # stack's S3 locally (one endpoint per process either way).
        wr.config.s3_endpoint_url = self.endpoint_url
        return wr

    def objects(self, uri: str) -> list[tuple[str, int]]:
        """(uri, size) of the object at ``uri``, or of every object under the prefix
        ``uri`` when it ends with '/' (folder markers and empty objects skipped)."""
        wr = self._wr()
        if uri.endswith("/"):
            paths = [p for p in wr.s3.list_objects(uri, boto3_session=self.session)
                     if not p.endswith("/")]  # fmt: skip
        else:
            paths = [uri]
        sizes = wr.s3.size_objects(paths, boto3_session=self.session) if paths else {}
        found = [(p, int(s)) for p, s in sizes.items() if s is not None]
        if not found:
            raise S3NotFoundError(f"no object at {uri}")
        return sorted(p for p in found if p[1] > 0) or found

    def get(self, uri: str) -> bytes:
        import io

        wr = self._wr()
        buf = io.BytesIO()
        wr.s3.download(uri, buf, boto3_session=self.session)
        return buf.getvalue()

    def dataset(self, uri: str) -> pd.DataFrame:
        """A (Hive-)partitioned Parquet dataset; partition keys become columns."""
        wr = self._wr()
        frame: pd.DataFrame = wr.s3.read_parquet(uri, dataset=True, boto3_session=self.session)
        return frame
