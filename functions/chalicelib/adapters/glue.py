"""The dataset catalog on AWS Glue, through awswrangler (the AWS SDK for pandas, which the
functions get from its Lambda layer): every dataset version becomes a Glue table over its
Parquet data, so it can be queried from Athena (``SELECT * FROM mlpipe_<stack>.<dataset>_v<n>``).

Table and column names follow Glue/Athena's rules (lower case, ``[a-z0-9_]``); when a column
name had to change, the table's SerDe reads Parquet columns by position
(``parquet.column.index.access``) and each column keeps its original name as its comment.
"""

from __future__ import annotations

from typing import Any

# Parquet (pyarrow) type -> Athena type; anything else is read as a string.
ATHENA_TYPES = {"int8": "tinyint", "int16": "smallint", "int32": "int", "int64": "bigint",
                "uint8": "smallint", "uint16": "int", "uint32": "bigint", "uint64": "bigint",
                "float": "float", "double": "double", "bool": "boolean", "string": "string",
                "large_string": "string", "date32[day]": "date"}  # fmt: skip


def athena_type(arrow_type: str) -> str:
    if arrow_type.startswith("timestamp"):
        return "timestamp"
    return ATHENA_TYPES.get(arrow_type, "string")


class GlueCatalog:
    def __init__(self, database: str, session: Any) -> None:
        self.database = database
        self.session = session  # a boto3 Session (awswrangler takes sessions, not clients)
        self.glue = session.client("glue")

    def table_name(self, dataset: str, version: int) -> str:
        import awswrangler as wr

        return str(wr.catalog.sanitize_table_name(f"{dataset}_v{version}"))

    def register(self, dataset: str, version: int, location: str, columns: dict[str, str]) -> str:
        """Create (or replace) the table of one dataset version; ``columns`` maps each Parquet
        column to its pyarrow type name, in file order. Returns the table name."""
        import awswrangler as wr

        names: dict[str, str] = {}
        for original in columns:
            name = wr.catalog.sanitize_column_name(original) or "col"
            while name in names.values():
                name += "_"
            names[original] = name
        renamed = any(k != v for k, v in names.items())
        table = self.table_name(dataset, version)
        wr.catalog.create_parquet_table(
            database=self.database,
            table=table,
            path=location.rstrip("/") + "/",
            columns_types={names[c]: athena_type(t) for c, t in columns.items()},
            columns_comments={names[c]: c[:255] for c in columns},
            description=f"mlpipe dataset {dataset} v{version}",
            parameters={"mlpipe:dataset": dataset, "mlpipe:version": str(version)},
            mode="overwrite",
            boto3_session=self.session,
        )  # fmt: skip
        if renamed:
            self._read_by_position(table)
        return table

    def _read_by_position(self, table: str) -> None:
        current = self.glue.get_table(DatabaseName=self.database, Name=table)["Table"]
        keep = ("Name", "Description", "Owner", "Retention", "StorageDescriptor",
                "PartitionKeys", "TableType", "Parameters")  # fmt: skip
        table_input = {k: current[k] for k in keep if k in current}
        serde = table_input["StorageDescriptor"].setdefault("SerdeInfo", {})
        serde.setdefault("Parameters", {})["parquet.column.index.access"] = "true"
        self.glue.update_table(DatabaseName=self.database, TableInput=table_input)

    def unregister(self, dataset: str, version: int) -> None:
        import awswrangler as wr

        wr.catalog.delete_table_if_exists(
            database=self.database,
            table=self.table_name(dataset, version),
            boto3_session=self.session,
        )
