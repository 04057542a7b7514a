"""Calls the Deno functions task_a and task_b from Celery, as the original systems did.

Run: /usr/bin/python3 examples/celery/client.py   (with CELERY_BROKER_URL set)
Prints one line per call and exits 0 when every expectation holds.
"""

import sys

from celery_app import app, task_a, task_b


def main() -> int:
    failures = 0
    # delay() and send_task(), at once.
    calls = {
        "task_a.delay": task_a.delay(work_ms=100),
        "task_b.delay": task_b.delay(work_ms=200),
        "send_task tasks.task_a": app.send_task("tasks.task_a", kwargs={"work_ms": 50}),
        "apply_async queue_b": task_b.apply_async(kwargs={"work_ms": 10}, queue="queue_b"),
    }
    expected = {
        "task_a.delay": "Hello from Task A",
        "task_b.delay": "Hello from Task B",
        "send_task tasks.task_a": "Hello from Task A",
        "apply_async queue_b": "Hello from Task B",
    }
    # All four were sent before the first wait: they run at once.
    results = {name: call.get(timeout=20) for name, call in calls.items()}
    for name, result in results.items():
        ok = result == expected[name]
        failures += not ok
        print(f"{name}: {result!r} {'ok' if ok else 'UNEXPECTED'}")

    # A failing call: retried on the Deno side, then raised here.
    failing = task_a.apply_async(kwargs={"fail_attempts": 10, "work_ms": 0})
    try:
        failing.get(timeout=30)
        print("failing call: no exception UNEXPECTED")
        failures += 1
    except Exception as error:  # noqa: BLE001 - Celery builds the class from the reply
        print(f"failing call: raised {type(error).__name__}: {error}")
        failures += type(error).__name__ != "SimulatedFailure"

    # What Deno functions do not support is refused, clearly.
    chained = (task_a.si(work_ms=0) | task_b.si(work_ms=0)).apply_async()
    try:
        chained.parent.get(timeout=20)
        print("chain: no exception UNEXPECTED")
        failures += 1
    except Exception as error:  # noqa: BLE001
        print(f"chain: raised {type(error).__name__}: {error}")
        failures += "chain" not in str(error)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
