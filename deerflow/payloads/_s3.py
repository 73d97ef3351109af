"""The S3 blob store (boto3, imported when the store starts; the ``s3`` extra)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from deerflow.errors import MissingDependency, PayloadUnreadable
from deerflow.payloads._blobs import BlobStore, directory, missing

__all__ = ["S3BlobStore"]

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class S3BlobStore(BlobStore):
    """Blobs as objects of an S3 bucket (or any S3-compatible store: MinIO, moto).

    Args:
        bucket: the bucket (it must exist).
        prefix: prepended to every key (``prefix/key``).
        endpoint_url: another S3 endpoint (default ``AWS_ENDPOINT_URL``, else AWS).
        region: the bucket's region (default from the AWS configuration).
        client: a boto3 S3 client to use instead of building one.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self._region = region
        self._client = client

    async def start(self) -> None:
        """Build the boto3 client (once)."""
        if self._client is not None:
            return
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - only without the extra
            raise MissingDependency(
                "S3 blob stores need boto3: pip install 'deerflow[s3]'"
            ) from exc
        options: dict[str, Any] = {"region_name": self._region or "us-east-1"}
        if self._endpoint:
            options["endpoint_url"] = self._endpoint
        self._client = boto3.client("s3", **options)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes) -> None:
        """``PutObject`` (durable when S3 answers)."""
        await self.start()
        await asyncio.to_thread(
            self._client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data
        )

    async def get(self, key: str) -> bytes:
        """``GetObject``; a missing object is :class:`PayloadUnreadable`, not retriable."""
        await self.start()
        try:
            reply = await asyncio.to_thread(
                self._client.get_object, Bucket=self.bucket, Key=self._key(key)
            )
            body: bytes = await asyncio.to_thread(reply["Body"].read)
        except Exception as exc:  # botocore raises many kinds
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                raise missing(self, key) from None
            raise PayloadUnreadable(f"blob {key!r} of {self.url} cannot be read: {exc}") from exc
        return body

    async def delete(self, key: str) -> None:
        """``DeleteObject``."""
        await self.start()
        await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def delete_prefix(self, prefix: str) -> int:
        """``ListObjectsV2`` under the prefix, then ``DeleteObjects`` by pages of 1,000."""
        await self.start()
        return await asyncio.to_thread(self._delete_prefix, self._key(directory(prefix)))

    def _delete_prefix(self, prefix: str) -> int:
        removed = 0
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:  # a page holds at most 1,000 keys: what one DeleteObjects takes
                self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                removed += len(keys)
        return removed
