"""A Celery 5 client, as the original Celery systems had it, calling Deno functions.

The only settings that differ from a plain Celery client are the documented
ones (docs/celery.md): the queues are declared by the Deno workers (quorum
queues with dead-letter targets), so the client must not declare them.
"""

import os

from celery import Celery
from kombu import Exchange, Queue

app = Celery("tasks", broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@localhost:5672//"), backend="rpc://")

app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_routes={
        "tasks.task_a": {"queue": "queue_a"},
        "tasks.task_b": {"queue": "queue_b"},
    },
    # The Deno workers declare these queues: the client publishes through the
    # exchange named after each queue and declares nothing.
    task_queues=[
        Queue("queue_a", Exchange("queue_a", type="direct"), routing_key="queue_a", no_declare=True),
        Queue("queue_b", Exchange("queue_b", type="direct"), routing_key="queue_b", no_declare=True),
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
