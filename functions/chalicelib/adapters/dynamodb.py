"""The metadata store on DynamoDB: one table, ``pk`` (hash) and ``sk`` (range) strings,
``rev`` (number) and ``doc`` (the JSON document as a string, so no Decimal conversions leak
into the domain). Conditional writes and TransactWriteItems give the revision semantics."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ports import ConditionFailedError, Delete, Record, TooLargeError, Write

# DynamoDB's item limit is 400 KB including attribute names; keep a margin.
MAX_DOC_BYTES = 390_000


class DynamoMetadata:
    def __init__(self, table: str, dynamodb: Any) -> None:
        self.table = table
        self.db = dynamodb

    def get(self, pk: str, sk: str) -> Record | None:
        resp = self.db.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        item = resp.get("Item")
        if not item:
            return None
        return Record(pk, sk, json.loads(item["doc"]["S"]), int(item["rev"]["N"]))

    def query(self, pk: str, sk_prefix: str = "") -> list[Record]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        if sk_prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :p)"
            kwargs["ExpressionAttributeValues"][":p"] = {"S": sk_prefix}
        records: list[Record] = []
        for page in self.db.get_paginator("query").paginate(**kwargs):
            for item in page.get("Items", []):
                records.append(
                    Record(pk, item["sk"]["S"], json.loads(item["doc"]["S"]), int(item["rev"]["N"]))
                )
        return sorted(records, key=lambda r: r.sk)

    def _put_request(self, write: Write, new_rev: int) -> dict[str, Any]:
        doc = json.dumps(write.item, separators=(",", ":"), allow_nan=False)
        if len(doc.encode()) > MAX_DOC_BYTES:
            raise TooLargeError(f"{write.pk}/{write.sk} is {len(doc)} bytes")
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                "pk": {"S": write.pk},
                "sk": {"S": write.sk},
                "rev": {"N": str(new_rev)},
                "doc": {"S": doc},
            },
        }
        if write.expected_rev == 0:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        elif write.expected_rev is not None:
            request["ConditionExpression"] = "rev = :rev"
            request["ExpressionAttributeValues"] = {":rev": {"N": str(write.expected_rev)}}
        return request

    def _delete_request(self, delete: Delete) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": delete.pk}, "sk": {"S": delete.sk}},
        }
        if delete.expected_rev is not None:
            request["ConditionExpression"] = "rev = :rev"
            request["ExpressionAttributeValues"] = {":rev": {"N": str(delete.expected_rev)}}
        return request

    def _next_rev(self, write: Write) -> int:
        if write.expected_rev is not None:
            return write.expected_rev + 1
        current = self.get(write.pk, write.sk)
        return (current.rev if current else 0) + 1

    def put(self, write: Write) -> int:
        new_rev = self._next_rev(write)
        try:
            self.db.put_item(**self._put_request(write, new_rev))
        except self.db.exceptions.ConditionalCheckFailedException:
            raise ConditionFailedError(f"{write.pk}/{write.sk}") from None
        return new_rev

    def put_many(self, writes: list[Write | Delete]) -> None:
        items: list[dict[str, Any]] = []
        for w in writes:
            if isinstance(w, Delete):
                items.append({"Delete": self._delete_request(w)})
            else:
                items.append({"Put": self._put_request(w, self._next_rev(w))})
        try:
            self.db.transact_write_items(TransactItems=items)
        except self.db.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons or not reasons:
                raise ConditionFailedError(f"transaction cancelled: {reasons}") from None
            raise
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConditionFailedError("transaction cancelled") from None
            raise

    def delete(self, pk: str, sk: str) -> None:
        self.db.delete_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
