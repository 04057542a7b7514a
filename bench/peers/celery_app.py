"""The Celery app of `deno task bench --peers`, for the worker and the client.

Environment: AMQP_URL (the broker), CELERY_QUEUE (the one queue this run uses,
so that runs never share a queue with anything else on the broker).
"""

import os
import sys
import time

from celery import Celery
from celery.signals import worker_ready

app = Celery("bench_peers", broker=os.environ["AMQP_URL"], backend="rpc://")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=os.environ["CELERY_QUEUE"],
    # No pidbox exchange and queue left on a shared broker; the bench does not
    # use remote control (its ready signal is worker_ready, below).
    worker_enable_remote_control=False,
)


@app.task(name="bench.work")
def work(ms=0):
    """A no-op, or a sleep of `ms` milliseconds for the seed scenario."""
    if ms > 0:
        time.sleep(ms / 1000)


@worker_ready.connect
def say_ready(**_):
    # Sent at the moment Celery logs "<name> ready.": its consumer is
    # started. Printed on stdout so that the worker can run at log level
    # WARNING, without a log line per task for the bench to read.
    sys.__stdout__.write("ready\n")
    sys.__stdout__.flush()
