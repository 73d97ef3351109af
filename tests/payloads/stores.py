"""Blob stores the payload tests use: an S3 bucket on moto_server, and what a store holds."""

from __future__ import annotations

import uuid

import pytest

from deerflow.payloads import BlobStore, LocalBlobStore, S3BlobStore


def s3_store(request: pytest.FixtureRequest) -> S3BlobStore:
    """A store in a fresh bucket of the session's moto_server, under the prefix ``deerflow``."""
    import boto3

    endpoint = request.getfixturevalue("moto_endpoint")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = f"blobs-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, prefix="deerflow", client=client)


async def keys_of(store: BlobStore) -> list[str]:
    """Every blob key ``store`` holds (a directory's or a bucket's)."""
    if isinstance(store, LocalBlobStore):
        found = [p for p in store.directory.rglob("*") if p.is_file()]
        return sorted(str(p.relative_to(store.directory)) for p in found)
    assert isinstance(store, S3BlobStore)
    await store.start()
    pages = store._client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=f"{store.prefix}/"
    )
    listed = [item["Key"] for page in pages for item in page.get("Contents", ())]
    return sorted(key.removeprefix(f"{store.prefix}/") for key in listed)
