"""A Faust app screening deerflow's orders: OrderStarted in, FraudCleared out.

It publishes every answer twice, as Faust may after a crash (at least once), to show that
deerflow's readers and handlers take it once. Run: ``python fraud_faust.py worker --without-web``.
"""

import os

import faust

from deerflow.faust_bridge import events_of, events_topic, publish

app = faust.App(
    f"fraud-{os.environ['DEERFLOW_PREFIX']}",
    broker=f"kafka://{os.environ['DEERFLOW_KAFKA_BOOTSTRAP']}",
    broker_session_timeout=3,  # quick group joins on Tansu
    web_enabled=False,
    store="memory://",  # no tables: their recovery is unreliable on Tansu
)
events = events_topic(app)


@app.agent(events)
async def screen(stream):
    async for message in stream.events():
        for event in events_of(message):
            if event.type == "OrderStarted":
                verdict = {**event.data, "fraud_score": 0.02}
                for _ in range(2):
                    await publish(events, "FraudCleared", verdict, cause=event)


if __name__ == "__main__":
    app.main()
