"""Flow control: at most two syncs per customer at once, and at most three emails a minute.

    python examples/flow_control.py
    deerflow serve examples/flow_control.py
    deerflow runs list --status queued

Runs over a limit wait in their history (status ``queued``) until their gate admits them, in
the order they were requested; emails over the rate are dropped, the reason in their history.
"""

from __future__ import annotations

import asyncio
import time

from deerflow import Concurrency, Engine, RateLimit, Workflow

sync = Workflow(name="customer_sync", concurrency=Concurrency(limit=2, key="params.customer"))


@sync.task(id="pull")
async def pull(context):
    """Stands in for a call to the customer's API, which allows two at a time."""
    await asyncio.sleep(0.2)
    return {"customer": context.params["customer"], "page": context.params["page"]}


email = Workflow(
    name="send_email",
    rate_limit=RateLimit(limit=3, period="1m", key="params.to", on_excess="drop"),
)


@email.task(id="send")
def send(context):
    """Stands in for a mail provider's API."""
    return f"sent to {context.params['to']}"


async def main() -> None:
    async with Engine("memory://flow-control", [sync, email]) as engine:
        began = time.monotonic()
        runs = [
            await engine.start(sync, params={"customer": customer, "page": page})
            for customer in ("acme", "globex")
            for page in range(4)
        ]
        await asyncio.gather(*(run.result(timeout=60) for run in runs))
        # Four pages per customer, two at a time, 0.2 s each: about 0.4 s, not 0.2 nor 1.6.
        print(f"8 syncs in {time.monotonic() - began:.1f}s")
        mails = [await engine.start(email, params={"to": "ann@example.com"}) for _ in range(5)]
        outcomes = [await run.result(timeout=60) for run in mails]
        print(sorted(r.status for r in outcomes))  # 3 completed, 2 dropped


if __name__ == "__main__":
    asyncio.run(main())
