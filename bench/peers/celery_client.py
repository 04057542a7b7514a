"""The Celery client of `deno task bench --peers`.

    python3 celery_client.py run --sizes 1000,10000 --runs 5 --seed-runs 10
                                 [--open-loop-ms 5000]
        times the benchmark's shapes against a running worker and prints one
        JSON line: {"tps": {"<size>": [tasks/s per run]}, "seed_ms": [...],
        "open": {"50": {...}, "80": {...}}, "versions": {...}}. Progress goes
        to stderr, with "cpu-mark begin" and "cpu-mark end <tasks>" around
        the timed runs of the largest size.
    python3 celery_client.py ping
        prints the versions as JSON if the broker answers, else fails.
    python3 celery_client.py cleanup
        deletes the run's queue and exchange from the broker.

Environment: as celery_app.py.
"""

import argparse
import json
import math
import platform
import socket
import sys
import time

import celery
import kombu
from celery.result import ResultSet

from celery_app import app, work


def versions():
    with app.connection_for_write() as connection:
        connection.connect()
        server = connection.connection.server_properties
    return {
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "python": platform.python_version(),
        "rabbitmq": server.get("version", "?"),
    }


def time_run(specs):
    """Sends one task per entry of `specs` at once, then awaits every result.

    Results are gathered with ResultSet.join_native(), Celery's own way to
    wait for many rpc:// results as they come. A loop of result.get() in send
    order was 3 to 10 times slower here: Celery 5.2's result drain waits one
    interval (1 s) before it looks whether the result is already in, and in
    that loop each of a run's last results paid that second. Returns the
    wall time in milliseconds.
    """
    started = time.perf_counter()
    results = [work.delay(ms) for ms in specs]
    ResultSet(results).join_native(timeout=120)
    return (time.perf_counter() - started) * 1000


def rank(ordered, fraction):
    """The value below which `fraction` of `ordered` lie (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def open_loop(rate, duration_ms):
    """Sends tasks at `rate` a second for `duration_ms`, whatever the results.

    One thread: it sends what is due, then reads results for a millisecond,
    taking each result's arrival from the backend's message hook, and times
    each task from when it was due.
    """
    total = max(1, round(rate * duration_ms / 1000))
    consumer = app.backend.result_consumer
    due_at = {}
    latencies = []

    def on_message(meta):
        due = due_at.pop(meta.get("task_id"), None)
        if due is not None and meta.get("status") == "SUCCESS":
            latencies.append((time.perf_counter() - due) * 1000)

    previous, consumer.on_message = consumer.on_message, on_message
    started = time.perf_counter()
    sent = 0
    try:
        deadline = started + duration_ms / 1000 + 120
        while len(latencies) < total:
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"{total - len(latencies)} open-loop results never came")
            due = min(total, int((now - started) * rate) + 1)
            while sent < due:
                result = work.apply_async((0,))
                due_at[result.id] = started + sent / rate
                sent += 1
            try:
                consumer.drain_events(timeout=0.001)
            except socket.timeout:
                pass
    finally:
        consumer.on_message = previous
    ms = (time.perf_counter() - started) * 1000
    ordered = sorted(latencies)
    return {
        "rate": rate,
        "sent": total,
        "tps": total / (ms / 1000),
        "p50": rank(ordered, 0.5),
        "p99": rank(ordered, 0.99),
        "max": ordered[-1],
    }


def run(args):
    figures = {"tps": {}, "seed_ms": [], "open": {}, "versions": versions()}
    sizes = [int(s) for s in args.sizes.split(",")]
    # Like the product's bench client, each shape runs once untimed first.
    for size in sizes:
        time_run([0] * size)
        figures["tps"][str(size)] = []
        largest = size == sizes[-1]
        if largest:
            print("cpu-mark begin", file=sys.stderr, flush=True)
        for _ in range(args.runs):
            tps = size / (time_run([0] * size) / 1000)
            figures["tps"][str(size)].append(tps)
            print(f"celery {size} tasks: {tps:.0f} tasks/s", file=sys.stderr, flush=True)
        if largest:
            print(f"cpu-mark end {size * args.runs}", file=sys.stderr, flush=True)
    time_run([100, 200])
    for _ in range(args.seed_runs):
        figures["seed_ms"].append(time_run([100, 200]))
    if args.open_loop_ms > 0:
        runs = sorted(figures["tps"][str(sizes[-1])])
        maximum = runs[len(runs) // 2]
        for load in (50, 80):
            figures["open"][str(load)] = open_loop(maximum * load / 100, args.open_loop_ms)
            print(f"celery open loop at {load}%: p50 {figures['open'][str(load)]['p50']:.1f} ms",
                  file=sys.stderr, flush=True)
    print(json.dumps(figures))


def cleanup():
    queue = app.conf.task_default_queue
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["run", "ping", "cleanup"])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed-runs", type=int, default=10)
    parser.add_argument("--open-loop-ms", type=int, default=0)
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "ping":
        print(json.dumps(versions()))
    else:
        cleanup()


if __name__ == "__main__":
    main()
