"""The dashboard shows a large value cut short, with its size and a link to the whole of it."""

from __future__ import annotations

import re
from pathlib import Path

from deerflow.payloads import reference
from tests.payloads.kept import kept_records
from tests.web.conftest import deploy, isolated  # noqa: F401 - the web suite's isolation


async def test_a_large_input_shows_its_size_and_links_to_the_whole_value(isolated: Path):
    store = f"sqlite:///{isolated / 'web.db'}"
    rows = ["r" * 1000] * 1000  # about 1 MB: kept in the blob store beside the file
    async for served in deploy(store, isolated):
        wf = served.engine.registry.get("validate_batch")
        assert wf is not None
        handle = await served.engine.start(wf, input=rows)
        assert (await handle.result(timeout=60)).output == {"valid": 1000}
        async with served.session.get(f"{served.url}/ui/runs/{handle.run_id}") as reply:
            assert reply.status == 200
            page = await reply.text()
        assert "… (1003001 chars)" in page  # the size of the value cut short
        [link] = re.findall(r'<a class="whole" href="([^"]+)">', page)
        assert link == f"/api/runs/{handle.run_id}"
        whole = await served.get(link)
        assert whole["run"]["input"] == rows
        refs = [reference(r) for r in await kept_records(served.engine)]
    assert any(ref is not None and ref.size > 1_000_000 for ref in refs)
