"""``--executor dask --scheduler ADDRESS``: a batch graded on a Dask distributed cluster.

Each submission is one Dask task.  On its worker the task runs the same grader as a local
batch (:func:`symbackprop.grading.batch.grade` of that one submission: its own process,
sandboxed, under its limits), so a verdict does not depend on where it was computed; the
results come back in the batch's order.  The submissions, the declaration and the package
must be at the same paths on every worker (a shared file system), and the workers must be
allowed to start processes (``distributed.worker.daemon: False`` in Dask's configuration,
or ``dask worker --no-nanny``).  Dask is an optional extra: ``pip install '.[dask]'``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..errors import SymbackpropError
from .batch import Batch, Result, grade
from .worker import Task

INSTALL_HINT = "--executor dask needs Dask's distributed scheduler: pip install 'symbackprop[dask]'"
#: Seconds to wait for the scheduler to answer.
CONNECT_SECONDS = 30


def grade_on_cluster(tasks: Sequence[Task], scheduler: str, *,
                     on_progress: Callable[[list[Result], int], None] | None = None,
                     on_result: Callable[[int, Result], None] | None = None) -> Batch:
    """Grade every task on the Dask cluster whose scheduler listens at ``scheduler``
    (``tcp://host:8786``, or a :class:`distributed.LocalCluster`'s address).

    Returns
    -------
    Batch
        As :func:`~symbackprop.grading.batch.grade` returns it; ``jobs`` is the number of
        workers the cluster had.
    """
    try:
        from distributed import Client, as_completed  # noqa: PLC0415 - an optional dependency
    except ImportError:
        raise SymbackpropError(INSTALL_HINT) from None
    start = time.monotonic()
    try:
        client = Client(scheduler, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SymbackpropError(f"--scheduler {scheduler}: cannot reach it ({type(exc).__name__}: {exc})") from None
    with client:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        futures = client.map(grade_one, list(tasks), pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        done: dict[int, Result] = {}
        for future in as_completed(futures):
            i = index[future.key]
            done[i] = future.result()
            if on_result is not None:
                on_result(i, done[i])
            if on_progress is not None:
                on_progress(list(done.values()), len(tasks) - len(done))
    return Batch([done[i] for i in range(len(tasks))], round(time.monotonic() - start, 3), workers)


def grade_one(task: Task) -> Result:
    """One submission, graded on this machine as a local batch of one would grade it."""
    return grade([task], jobs=1, isolation=task.isolation).results[0]
