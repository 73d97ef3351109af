"""AWS plumbing for S3 triggers: clients, the trigger's SQS queue, the bucket notification.

All functions here are blocking boto3 calls; the connectors run them in threads. Endpoint,
region and credentials come from boto3's usual configuration (environment, profiles,
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_SQS``) unless the trigger names an endpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from deerflow.errors import ConnectorError, MissingDependency
from deerflow.events import S3Event

T = TypeVar("T")
_QUEUE_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
POLICY_SID = "deerflow-s3-notifications"


def clients(trigger: S3Event) -> tuple[Any, Any]:
    """Boto3 S3 and SQS clients for ``trigger`` (thread-safe, shared by the threads)."""
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise MissingDependency("S3 triggers need boto3: pip install 'deerflow[s3]'") from exc
    session = boto3.session.Session(region_name=trigger.region)
    options: dict[str, Any] = {}
    if trigger.endpoint_url:
        options["endpoint_url"] = trigger.endpoint_url
    if session.region_name is None:
        options["region_name"] = "us-east-1"  # S3 works without one; SQS does not
    return session.client("s3", **options), session.client("sqs", **options)


_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "AuthFailure",
        "InvalidSecurity",
    }
)
_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def aws_problem(
    trigger: S3Event, name: str, attempt: str, where: str, exc: Exception
) -> ConnectorError:
    """A one-line error for an AWS call that failed: what was tried, why, how to fix it.

    Args:
        trigger: the trigger whose setup failed.
        name: the trigger's name.
        attempt: what was tried, e.g. ``"listing bucket 'b'"``.
        where: the endpoint called.
        exc: what boto3 raised.
    """
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    kind = type(exc).__name__
    if code in ("NoSuchBucket", "404") or kind == "NoSuchBucket":
        fix = f"bucket {trigger.bucket!r} does not exist at {where}: create it, or fix bucket="
    elif code in _NO_QUEUE or kind == "QueueDoesNotExist":
        fix = f"queue {trigger.queue!r} does not exist at {where}: create it, or fix queue="
    elif code in _BAD_CREDENTIALS:
        fix = (
            f"{where} refused the credentials ({code}): check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or the AWS profile"
        )
    elif code in ("AccessDenied", "AccessDeniedException", "403"):
        fix = f"{where} denied access ({code}): grant these credentials the permission"
    elif kind == "NoCredentialsError":
        fix = "no AWS credentials found: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile"
    elif kind in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        fix = f"cannot reach {where}: check endpoint_url= / $AWS_ENDPOINT_URL and the network"
    else:
        fix = f"{kind}: {exc}"
    return ConnectorError(f"S3 trigger {name}: {attempt} failed: {fix}", retriable=False)


async def in_thread(
    trigger: S3Event, name: str, attempt: str, call: Callable[..., T], client: Any, *args: Any
) -> T:
    """``call(client, *args)`` in a thread; its failure is :func:`aws_problem`'s one line."""
    try:
        return await asyncio.to_thread(call, client, *args)
    except ConnectorError:
        raise
    except Exception as exc:  # boto3 raises many kinds; each becomes a one-line cause
        where = str(getattr(getattr(client, "meta", None), "endpoint_url", None) or "AWS")
        raise aws_problem(trigger, name, attempt, where, exc) from exc


def default_queue_name(prefix: str, trigger_name: str) -> str:
    """An SQS queue name for a trigger: readable, at most 80 allowed characters, unique."""
    digest = hashlib.sha256(f"{prefix}/{trigger_name}".encode()).hexdigest()[:10]
    readable = _QUEUE_CHARS.sub("-", f"{prefix}-{trigger_name}")[:68]
    return f"{readable}-{digest}"


def queue_url(sqs: Any, queue: str) -> str:
    """The URL of an existing queue given its name or URL (checked either way)."""
    url = queue
    if not queue.startswith(("http://", "https://")):
        url = str(sqs.get_queue_url(QueueName=queue)["QueueUrl"])
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])  # exists, readable
    return url


def check_bucket(s3: Any, trigger: S3Event) -> None:
    """List one key of the trigger's bucket: it exists and these credentials may list it."""
    s3.list_objects_v2(Bucket=trigger.bucket, Prefix=trigger.key_prefix, MaxKeys=1)


def ensure_queue(sqs: Any, name: str, bucket: str) -> tuple[str, str]:
    """Create (or reuse) queue ``name`` that S3 may send ``bucket``'s events to: (url, arn)."""
    url = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "Policy"])
    arn = str(attrs["Attributes"]["QueueArn"])
    policy = json.loads(attrs["Attributes"].get("Policy") or '{"Version": "2012-10-17"}')
    statements = [s for s in policy.get("Statement", []) if s.get("Sid") != POLICY_SID]
    ours = {
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": arn,
        "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:*:*:{bucket}"}},
    }
    if ours not in policy.get("Statement", []):
        policy["Statement"] = [*statements, ours]
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url, arn


def _desired(config_id: str, arn: str, trigger: S3Event) -> dict[str, Any]:
    rules = []
    if trigger.key_prefix:
        rules.append({"Name": "prefix", "Value": trigger.key_prefix})
    if trigger.key_suffix:
        rules.append({"Name": "suffix", "Value": trigger.key_suffix})
    desired: dict[str, Any] = {"Id": config_id, "QueueArn": arn, "Events": list(trigger.events)}
    if rules:
        desired["Filter"] = {"Key": {"FilterRules": rules}}
    return desired


def _same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    def rules(c: dict[str, Any]) -> list[tuple[str, str]]:
        found = c.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        return sorted((r["Name"].lower(), r["Value"]) for r in found)

    return (
        current.get("QueueArn") == desired["QueueArn"]
        and sorted(current.get("Events", [])) == sorted(desired["Events"])
        and rules(current) == rules(desired)
    )


def _lowercase_rule_names(config: dict[str, Any]) -> None:
    # GET answers "Prefix"/"Suffix"; PUT documents (and moto only accepts) lower case.
    for kind in ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations"):
        for entry in config.get(kind, []):
            for rule in entry.get("Filter", {}).get("Key", {}).get("FilterRules", []):
                rule["Name"] = str(rule["Name"]).lower()


def ensure_notification(s3: Any, trigger: S3Event, config_id: str, arn: str) -> bool:
    """Add (or update) this trigger's queue notification on the bucket; returns if changed.

    Every other configuration (queues, topics, lambdas, EventBridge) is kept: the current
    configuration is read, ours replaced or appended, the whole written back, and read again
    to make sure a concurrent writer did not drop ours.
    """
    for _ in range(3):
        config = s3.get_bucket_notification_configuration(Bucket=trigger.bucket)
        config.pop("ResponseMetadata", None)
        queues = config.get("QueueConfigurations", [])
        desired = _desired(config_id, arn, trigger)
        current = next((q for q in queues if q.get("Id") == config_id), None)
        if current is not None and _same(current, desired):
            return False
        config["QueueConfigurations"] = [q for q in queues if q.get("Id") != config_id] + [desired]
        _lowercase_rule_names(config)
        try:
            s3.put_bucket_notification_configuration(
                Bucket=trigger.bucket, NotificationConfiguration=config
            )
        except Exception as exc:
            raise ConnectorError(
                f"cannot add a notification to bucket {trigger.bucket!r} ({exc}); if it "
                "overlaps an existing one, fan out through SNS/EventBridge and pass queue=",
                retriable=False,
            ) from exc
        check = s3.get_bucket_notification_configuration(Bucket=trigger.bucket)
        if any(q.get("Id") == config_id for q in check.get("QueueConfigurations", [])):
            return True
    raise ConnectorError(f"bucket {trigger.bucket!r}: the notification kept being overwritten")
