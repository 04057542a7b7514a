"""A Celery 5 client, as the original Celery systems had it, calling Deno functions.

The only settings that differ from a plain Celery client are the documented
ones (docs/celery.md, "Client settings"):

- the Deno workers declare their queues (quorum queues with dead-letter
  targets), so the client declares none of them (`no_declare=True`);
- each route names the exchange named after its queue: that route is what
  proves a request came from a Celery client's broker user, as only those
  users (and the function's own workers) may write to it. Without `exchange`
  and `routing_key`, Celery publishes through the default exchange instead,
  which a Celery client's user may not use.
"""

import os

from celery import Celery
from kombu import Exchange, Queue

app = Celery(
    "tasks",
    broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@localhost:5672//"),
    backend="rpc://",
)


def route(queue):
    """The Celery route of a Deno function: the exchange named after its queue."""
    return {"queue": queue, "exchange": queue, "routing_key": queue}


app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_routes={
        "tasks.task_a": route("queue_a"),
        "tasks.task_b": route("queue_b"),
    },
    task_queues=[
        Queue(name, Exchange(name, type="direct"), routing_key=name, no_declare=True)
        for name in ("queue_a", "queue_b")
    ],
)


@app.task(name="tasks.task_a")
def task_a(**payload):
    """Runs in Deno now: this body never runs on the client."""
    raise NotImplementedError


@app.task(name="tasks.task_b")
def task_b(**payload):
    """Runs in Deno now: this body never runs on the client."""
    raise NotImplementedError
