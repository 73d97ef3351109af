"""Flow control: at most two syncs per customer at once, and at most three emails a minute.

    python examples/flow_control.py
    deerflow serve examples/flow_control.py
    deerflow runs list --status queued

Runs over a limit wait in their history (status ``queued``) until their gate admits them, in
the order they were requested; emails over the rate are dropped, the reason in their history.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from deerflow import Concurrency, Engine, RateLimit, Workflow

sync = Workflow(name="customer_sync", concurrency=Concurrency(limit=2, key="params.customer"))


#: pulls under way and the most seen at once, by customer (one process: memory:// below)
running: Counter[str] = Counter()
most: Counter[str] = Counter()


@sync.task(id="pull")
async def pull(context):
    """Stands in for a call to the customer's API, which allows two at a time."""
    customer = context.params["customer"]
    running[customer] += 1
    most[customer] = max(most[customer], running[customer])
    try:
        await asyncio.sleep(0.2)
    finally:
        running[customer] -= 1
    return {"customer": customer, "page": context.params["page"]}


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
        runs = [
            await engine.start(sync, params={"customer": customer, "page": page})
            for customer in ("acme", "globex")
            for page in range(4)
        ]
        await asyncio.gather(*(run.result(timeout=60) for run in runs))
        # Four pages per customer, queued past two: never more than two of one customer at once.
        print(f"8 syncs, at most at once: {dict(sorted(most.items()))}")
        mails = [await engine.start(email, params={"to": "ann@example.com"}) for _ in range(5)]
        outcomes = [await run.result(timeout=60) for run in mails]
        print(sorted(r.status for r in outcomes))  # 3 completed, 2 dropped


if __name__ == "__main__":
    asyncio.run(main())
