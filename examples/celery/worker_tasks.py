"""A Celery 5 worker that the dispatcher calls: tasks.task_c, on its own queue, as its own broker user.

Run (Debian's python3-celery ships no `celery` wrapper):

    AMQP_URL=amqp://task_c@localhost:5672// AMQP_PASSWORD_FILE=secrets/task_c.password \\
      /usr/bin/python3 -m celery -A worker_tasks worker -Q queue_c -c 2 \\
      --without-gossip --without-mingle --without-heartbeat

What it takes to be called by `deno task dispatch` as a `protocol: celery`
function (docs/celery.md, "The dispatcher calls Celery workers"):

- JSON only, and the `rpc://` result backend: results go to the caller's
  Direct Reply-to queue through the default exchange;
- results carry `user_id`, the broker user, which RabbitMQ checks: the
  dispatcher believes a result only from the function's broker user. Celery
  has no setting for it, hence `StampedRPCBackend`;
- it runs a task only from the broker users in ALLOWED_SENDERS (default:
  dispatcher, admin), read from the `user_id` of the request, which RabbitMQ
  checks too: any user that may publish to the default exchange can put a
  message on this queue;
- least privilege on the broker: it declares its one queue (and, as Celery
  always does, a direct exchange of the same name bound to it), and has
  remote control, gossip, mingle and heartbeats off, so it touches no pidbox
  or event exchange.
"""

import os
import time
from urllib.parse import quote, urlsplit, urlunsplit

from celery import Celery, Task
from celery.backends.rpc import RPCBackend
from kombu import Exchange, Queue

QUEUE = os.environ.get("CELERY_QUEUE", "queue_c")
ALLOWED_SENDERS = frozenset(
    s.strip() for s in os.environ.get("ALLOWED_SENDERS", "dispatcher,admin").split(",") if s.strip()
)


def broker_url():
    """AMQP_URL, with the password from AMQP_PASSWORD_FILE when that is set.

    Not CELERY_BROKER_URL: Celery reads that variable itself, and it would
    win over the URL with the password.
    """
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672//")
    password_file = os.environ.get("AMQP_PASSWORD_FILE")
    if not password_file:
        return url
    with open(password_file, encoding="utf-8") as file:
        password = file.read().rstrip("\r\n")
    parts = urlsplit(url)
    netloc = f"{parts.username}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class StampedRPCBackend(RPCBackend):
    """Celery's rpc:// results, each stamped with this worker's broker user (`user_id`)."""

    def store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        reply_to, correlation_id = self.destination_for(task_id, request)
        if not reply_to:
            return result
        with self.app.amqp.producer_pool.acquire(block=True) as producer:
            producer.publish(
                self._to_result(task_id, state, result, traceback, request),
                exchange=self.exchange,
                routing_key=reply_to,
                correlation_id=correlation_id,
                serializer=self.serializer,
                retry=True,
                retry_policy=self.retry_policy,
                delivery_mode=self.delivery_mode,
                # RabbitMQ refuses a user_id other than the connection's user.
                user_id=producer.connection.userid,
            )
        return result


class Unauthenticated(Exception):
    """The request came from a broker user this worker does not serve."""


class SimulatedFailure(Exception):
    """A failure the payload asked for (fail_attempts)."""


class AuthenticatedTask(Task):
    """Runs only requests whose validated sender (`user_id`) is in ALLOWED_SENDERS."""

    def __call__(self, *args, **kwargs):
        sender = (self.request.properties or {}).get("user_id")
        if sender not in ALLOWED_SENDERS:
            raise Unauthenticated(
                f"Cannot run a request from broker user {sender!r}: this worker accepts requests "
                f"from {', '.join(sorted(ALLOWED_SENDERS))} only (ALLOWED_SENDERS)"
            )
        return super().__call__(*args, **kwargs)


app = Celery(
    "worker_tasks",
    broker=broker_url(),
    backend=f"{__name__}:StampedRPCBackend",
)

app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    # As Celery declares a queue anyway: a direct exchange of its name, bound to it.
    task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)],
    task_default_queue=QUEUE,
    # STARTED results tell the caller which worker took the task.
    task_track_started=True,
    worker_enable_remote_control=False,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="tasks.task_c", bind=True, base=AuthenticatedTask)
def task_c(self, work_ms=100, fail_attempts=0, **_ignored):
    """Answers "Hello from Task C" after work_ms; fails the first fail_attempts attempts."""
    attempt = self.request.retries + 1
    if attempt <= fail_attempts:
        raise SimulatedFailure(
            f"Failing attempt {attempt} as the payload asks the first {fail_attempts} to fail"
        )
    time.sleep(work_ms / 1000)
    return "Hello from Task C"
