"""A Faust agent in deerflow's choreography: one file, two kinds of process.

The Faust side screens every ``OrderStarted`` that deerflow publishes and answers with
``FraudCleared`` or ``FraudSuspected``. The deerflow side starts orders, approves the cleared
ones in an event handler, and opens a review run for each suspected one through a Kafka
trigger on the same events topic. Start each side in its own terminal::

    export DEERFLOW_KAFKA_BOOTSTRAP=localhost:9092 DEERFLOW_PREFIX=shop
    python examples/faust_agent.py worker --without-web -l info             # Faust
    deerflow serve examples/faust_agent.py --store kafka://localhost:9092   # deerflow
    deerflow run examples/faust_agent.py:checkout --store kafka://localhost:9092 \\
        -p order_id=7 -p amount=2500

Faust settings that matter on a small or test broker: ``broker_session_timeout=3`` (quick
group joins) and no tables (on brokers whose end offsets are unreliable, such as Tansu, table
recovery can lose the last records). ``faust worker`` binds its web port (6066) even with
``web_enabled=False``: pass ``--without-web`` (or ``--web-port``) to run several on one host.
deerflow itself never imports Faust; only :mod:`deerflow.faust_bridge` does.
"""

from __future__ import annotations

import os

import faust

from deerflow import Workflow, publish_event
from deerflow.engine import Topics
from deerflow.events import KafkaEvent
from deerflow.faust_bridge import events_of, events_topic, publish

# -- the Faust side ----------------------------------------------------------------------------

app = faust.App(
    "fraud-screening",
    broker=f"kafka://{os.environ.get('DEERFLOW_KAFKA_BOOTSTRAP', 'localhost:9092')}",
    broker_session_timeout=3,
    web_enabled=False,
    store="memory://",
)
events = events_topic(app)  # deerflow's events topic ($DEERFLOW_PREFIX.events)


def fraud_score(order: dict) -> float:
    """Stand-in for a model: large orders look riskier."""
    return min(1.0, float(order.get("amount", 0)) / 5000)


@app.agent(events)
async def screen(stream):
    """React to deerflow's OrderStarted with a verdict deerflow reacts to in turn."""
    async for message in stream.events():
        for event in events_of(message):
            if event.type != "OrderStarted":
                continue
            score = fraud_score(event.data)
            verdict = "FraudSuspected" if score > 0.4 else "FraudCleared"
            # cause=event: same correlation id, causation = the order event, and an id that
            # stays the same if Faust delivers the order again.
            await publish(events, verdict, {**event.data, "score": score}, cause=event)


# -- the deerflow side -------------------------------------------------------------------------

checkout = Workflow(name="checkout")


@checkout.task(id="start_order")
def start_order(context):
    publish_event("OrderStarted", context.params)
    return {"order_id": context.params.get("order_id")}


@checkout.event_handler("FraudCleared")
def approve(event):
    publish_event("OrderApproved", event.data)


review = Workflow(name="fraud_review")
review.add_trigger(
    KafkaEvent(
        topic=Topics.from_env().events,
        consumer_group="fraud-review",
        filter=lambda message: message["type"] == "FraudSuspected",
        dedupe_key=lambda message: message["id"],  # one review per event, even if sent twice
    )
)


@review.task(id="open_case")
def open_case(context):
    suspected = context.trigger_event.message
    return {"case_for": suspected["data"].get("order_id"), "score": suspected["data"]["score"]}


if __name__ == "__main__":
    app.main()
