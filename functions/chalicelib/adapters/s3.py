"""The object store on S3: one bucket, the same keys as the local store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import NotFoundError
from chalicelib.ports import check_key

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class S3ObjectStore:
    def __init__(self, bucket: str, s3: Any) -> None:
        self.bucket = bucket
        self.s3 = s3

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{check_key(key)}"

    def key_of(self, uri: str) -> str:
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not in this object store")
        return check_key(uri[len(prefix) :])

    def put_bytes(self, key: str, data: bytes) -> str:
        self.s3.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)
        return self.uri(key)

    def presign_put(self, key: str, expires_seconds: int) -> str:
        """A URL that lets its holder PUT one object at ``key`` until it expires (large
        dataset uploads: chalicelib/uploads.py); signed with the functions' role."""
        url: str = self.s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": check_key(key)},
            ExpiresIn=expires_seconds,
        )
        return url

    def get_bytes(self, key: str) -> bytes:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=check_key(key))["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _MISSING:
                raise NotFoundError(f"object {key!r} not found") from None
            raise
        return bytes(body.read())

    def put_file(self, key: str, path: Path) -> str:
        self.s3.upload_file(str(path), self.bucket, check_key(key))
        return self.uri(key)

    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(self.bucket, check_key(key), str(dest))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _MISSING:
                raise NotFoundError(f"object {key!r} not found") from None
            raise
        return dest

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _MISSING:
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        if prefix:  # a directory, as in the file store: "runs/r1" must not match "runs/r10/"
            prefix = prefix.rstrip("/") + "/"
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        if self.exists(prefix.rstrip("/")):
            keys.append(prefix.rstrip("/"))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
