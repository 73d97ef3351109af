"""The API keeps its own contract: schemathesis, every check on, against ``deerflow serve``.

Schemathesis reads ``/api/openapi.json`` and sends what the document allows and what it does
not (coverage, fuzzing and a stateful phase following the links it infers between
operations); a server error, an answer the document does not describe, a valid request
refused, an invalid one accepted or an auth hole fails the test. The seed and the number of
examples are fixed, so a run is repeatable and takes well under a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.conftest import APP, serving

KEY = "contract-key"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.fixture
def keyed_server(isolated: Path) -> Iterator[str]:
    """``deerflow serve`` with an API key, one failed run and one running run in its store."""
    store = f"sqlite:///{isolated / 'contract.db'}"
    with serving(APP, store, isolated, DEERFLOW_API_KEYS=KEY) as proc:
        for hook in ("/hooks/etl", "/hooks/wait"):
            request = urllib.request.Request(proc.url + hook, data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert reply.status == 202
        yield proc.url
        (isolated / "release").touch()  # the waiting task ends, so the server stops at once


def test_the_server_does_what_its_openapi_document_says(keyed_server: str, isolated: Path):
    if not SCHEMATHESIS.exists():
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{keyed_server}/api/openapi.json",
        "--header",
        f"X-API-Key: {KEY}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        "7",
        "--max-examples",
        "12",
        "--workers",
        "1",
        "--request-timeout",
        "40",
    ]
    done = subprocess.run(
        # cwd: schemathesis keeps a cache of what it found in ./.schemathesis
        command,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=isolated,
        check=False,
    )
    report = done.stdout[-6000:]
    assert done.returncode == 0, report
    assert "Stateful" in report and "Scenarios:" in report  # the stateful phase ran


def test_the_document_states_the_constraints_the_server_enforces():
    from deerflow.web._openapi import document

    doc = document()
    runs = {p["name"]: p["schema"] for p in doc["paths"]["/api/runs"]["get"]["parameters"]}
    assert runs["limit"] == {"type": "integer", "minimum": 0}
    assert {f.get("format") for f in runs["since"]["anyOf"]} >= {"date-time", "date"}
    send = doc["paths"]["/api/runs/{run_id}/transitions"]["post"]
    body = send["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["transition"]["minLength"] == 1 and send["requestBody"]["required"]
    for ops in doc["paths"].values():
        for op in ops.values():
            if op["operationId"] != "openapi":
                assert {"400", "401", "404", "405", "429", "503"} <= set(op["responses"])
            if "requestBody" in op:
                assert {"408", "413"} <= set(op["responses"])
    json.dumps(doc)  # plain JSON
