"""The request shapes of the remote dataset sources (``source.type`` sql, s3, http).

Kept apart from ``chalicelib.schemas`` (which imports them into ``DatasetSource``) so the
readers and their shapes live together. Credentials are references only: an environment
variable's name or a Secrets Manager ARN, never a password.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- credentials --------------------------------------------------------------------------


class EnvCredentials(_Strict):
    env: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="The environment variable holding the password (local stack).",
    )


class SecretCredentials(_Strict):
    secret_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$",
        description=(
            "A Secrets Manager secret: a plain password, or JSON with a 'password' key "
            "(and optionally 'username')."
        ),
    )


Credentials = EnvCredentials | SecretCredentials

# --- sql ----------------------------------------------------------------------------------

SQL_DIALECTS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "mariadb+pymysql": "mariadb+pymysql",
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,127}(\.[A-Za-z_][A-Za-z0-9_$]{0,127})?$")


class SqlSource(_Strict):
    type: Literal["sql"]
    url: str = Field(
        min_length=1,
        max_length=2000,
        description=(
            "SQLAlchemy URL without the password, e.g. postgresql://user@host:5432/db, "
            "mysql://user@host/db, sqlite:////path/to.db"
        ),
    )
    table: str | None = Field(default=None, description="A table (or schema.table) to read.")
    query: str | None = Field(
        default=None, max_length=100_000, description="One SELECT statement to read."
    )
    credentials: Credentials | None = Field(
        default=None, description='{"env": "VAR"} or {"secret_arn": "arn:aws:secretsmanager:..."}'
    )
    chunk_rows: int = Field(
        default=50_000, ge=100, le=1_000_000, description="Rows fetched per round trip."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme not in SQL_DIALECTS:
            raise ValueError(
                "url must start with one of " + ", ".join(f"{s}://" for s in sorted(SQL_DIALECTS))
            )
        if not scheme.startswith("sqlite"):
            netloc = urlsplit(value).netloc
            userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
            if ":" in userinfo:
                # Never echo the URL: it holds the password.
                raise ValueError(
                    "url must not contain a password; pass it by reference in "
                    '"credentials" ({"env": "VAR"} or {"secret_arn": "..."})'
                )
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not _IDENT.match(value):
            raise ValueError("table must be a name or schema.name (letters, digits, _ and $)")
        return value

    @model_validator(mode="after")
    def _one(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        if self.query is not None:
            head = self.query.lstrip().split(None, 1)[0].lower() if self.query.strip() else ""
            if head not in ("select", "with"):
                raise ValueError("query must be one SELECT (or WITH ... SELECT) statement")
        return self


# --- s3 -----------------------------------------------------------------------------------


class S3Source(_Strict):
    type: Literal["s3"]
    uri: str = Field(
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
        max_length=2000,
        description=(
            "s3://bucket/key (one object), s3://bucket/prefix/ (every object under it), or "
            "a partitioned Parquet dataset's root with dataset: true"
        ),
    )
    dataset: bool = Field(
        default=False,
        description="Read a (Hive-)partitioned Parquet dataset: partition keys become columns.",
    )

    @model_validator(mode="after")
    def _check(self) -> S3Source:
        if self.dataset and not self.uri.endswith("/"):
            self.uri += "/"
        return self


# --- http ---------------------------------------------------------------------------------


class LinkHeaderPagination(_Strict):
    type: Literal["link_header"]


class NextFieldPagination(_Strict):
    type: Literal["next_field"]
    path: str = Field(
        default="next", min_length=1, max_length=200, description="Dotted path of the next URL."
    )


class PagePagination(_Strict):
    type: Literal["page"]
    param: str = Field(default="page", min_length=1, max_length=100)
    start: int = Field(default=1, ge=0)


Pagination = Annotated[
    LinkHeaderPagination | NextFieldPagination | PagePagination, Field(discriminator="type")
]


class HttpSource(_Strict):
    type: Literal["http"]
    url: str = Field(min_length=1, max_length=4000, description="An http:// or https:// URL.")
    records_path: str | None = Field(
        default=None,
        max_length=200,
        description="JSON only: dotted path to the array of records (e.g. data.items).",
    )
    pagination: Pagination | None = None
    max_pages: int = Field(default=100, ge=1, le=10_000, description="More pages are a 400.")
    timeout_seconds: float = Field(default=30, gt=0, le=300, description="Per request.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers (not secrets: they are kept in the lineage).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("url must not carry credentials")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in ("authorization", "cookie", "proxy-authorization", "host"):
                raise ValueError(f"header {name!r} is not allowed (no secrets in a source)")
            if not re.match(r"^[A-Za-z0-9-]{1,100}$", name):
                raise ValueError(f"header name {name[:40]!r} is not valid")
        return value


# --- upload -------------------------------------------------------------------------------


class UploadSource(_Strict):
    type: Literal["upload"]
    upload_id: str = Field(
        pattern=r"^[0-9a-f]{32}$", description="From POST /datasets/{name}/uploads."
    )
