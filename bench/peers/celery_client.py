"""The Celery client of `deno task bench --peers`.

    python3 celery_client.py run --sizes 1000,10000 --runs 5 --seed-runs 10
        times the benchmark's shapes against a running worker and prints one
        JSON line: {"tps": {"<size>": [tasks/s per run]}, "seed_ms": [...],
        "versions": {...}}. Progress goes to stderr.
    python3 celery_client.py ping
        prints the versions as JSON if the broker answers, else fails.
    python3 celery_client.py cleanup
        deletes the run's queue and exchange from the broker.

Environment: as celery_app.py.
"""

import argparse
import json
import platform
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


def run(args):
    figures = {"tps": {}, "seed_ms": [], "versions": versions()}
    # Like the product's bench client, each shape runs once untimed first.
    for size in [int(s) for s in args.sizes.split(",")]:
        time_run([0] * size)
        figures["tps"][str(size)] = []
        for _ in range(args.runs):
            tps = size / (time_run([0] * size) / 1000)
            figures["tps"][str(size)].append(tps)
            print(f"celery {size} tasks: {tps:.0f} tasks/s", file=sys.stderr)
    time_run([100, 200])
    for _ in range(args.seed_runs):
        figures["seed_ms"].append(time_run([100, 200]))
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
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "ping":
        print(json.dumps(versions()))
    else:
        cleanup()


if __name__ == "__main__":
    main()
