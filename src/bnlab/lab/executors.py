"""Where the trials train: in this process, or as Ray tasks. The driver writes the store.

``bnlab.lab.sweep.run_trials`` is the driver: it claims each work unit's trials in the store (a
unit is one trial, or the seeds of an arm trained together, see ``train.work_units``), hands the
unit to an executor, and writes each result in one transaction when it comes back. An executor
only trains; it never opens the store. Both executors offer the same three calls:

    slots                 how many units may be in flight at once
    submit(group, together) -> handle
    next_done() -> (handle, outcomes, error)   outcomes: one (history, results) per config

:class:`InProcess` trains the oldest submitted unit when asked for the next result (one slot), so
it claims a unit only when it is about to train it and concurrent ``bnlab run`` processes share the
work. An error in it propagates: the driver marks the unit failed and stops.

:class:`RayExecutor` runs each unit as a Ray task with ``cpus_per_task`` CPUs (slots: the cluster's
CPUs over that). Data: each worker loads the dataset from its own data sources (``bnlab.data.load``
with the run's ``--data-dir``; the parsed-array cache makes a second load take milliseconds) and
keeps it for its later tasks. A config fully describes its trial, so nothing but the configs and
results crosses the network; shipping the arrays through the object store would copy tens of MB
to every node for each run and tie the workers to the driver's files. A worker that dies is
retried once by Ray (``max_retries=1``); a task that still fails comes back as an ``error``
string: the driver marks its trials failed with it and the sweep goes on.
"""

from __future__ import annotations

import os
import traceback
from collections import deque
from pathlib import Path

from bnlab.errors import UserError


class InProcess:
    """Trains units one at a time in this process, when the driver asks for the next result."""

    slots = 1

    def __init__(self, data_dir=None, *, progress=True, datasets=None, save_models=None):
        self.data_dir, self.progress, self.save_models = data_dir, progress, save_models
        self.datasets = {} if datasets is None else datasets
        self._queue = deque()

    def submit(self, group, together):
        handle = object()
        self._queue.append((handle, group, together))
        return handle

    def next_done(self):
        from bnlab.lab import train

        handle, group, together = self._queue.popleft()
        return handle, train.train_unit(group, together, self.datasets, self.data_dir,
                                        self.progress, self.save_models), None

    def cancel(self):
        self._queue.clear()


_WORKER_DATASETS = {}  # a Ray worker's loaded datasets, kept for its next tasks


def _train_on_worker(group, together, data_dir, save_models):
    from bnlab.lab import runtime, train

    runtime.configure_xla(vectorized=together, convolutional=runtime.trains_convolutions(group))
    runtime.enable_compilation_cache()
    return train.train_unit(group, together, _WORKER_DATASETS, data_dir, progress=False,
                            save_models=save_models)


class RayExecutor:
    """Trains units as Ray tasks: a local Ray with this machine's cores, or the cluster at
    ``address`` (``ray.init(address=...)``, e.g. ``auto`` or ``ray://head:10001``)."""

    def __init__(self, address=None, data_dir=None, *, cpus_per_task=1, num_cpus=None,
                 save_models=None):
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'bnlab[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            if address:  # a cluster's workers get the driver's backend; local ones inherit it
                ray.init(address=address, runtime_env={"env_vars": {
                    "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}},
                    log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                         log_to_driver=False, logging_level="ERROR")
        self.cpus_per_task = cpus_per_task
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))
        self._task = ray.remote(_train_on_worker).options(num_cpus=cpus_per_task, max_retries=1)
        self.data_dir = None if data_dir is None else str(data_dir)
        # Saved models are written by the workers, on their own file systems: on one machine (a
        # local Ray) that is the driver's folder; on a cluster, give a shared folder.
        self.save_models = None if save_models is None else str(Path(save_models).resolve())
        self._pending = {}

    def submit(self, group, together):
        ref = self._task.remote(group, together, self.data_dir, self.save_models)
        self._pending[ref] = group
        return ref

    def next_done(self):
        (ref,), _ = self.ray.wait(list(self._pending), num_returns=1)
        self._pending.pop(ref)
        try:
            return ref, self.ray.get(ref), None
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            reason = "".join(traceback.format_exception_only(cause)).strip()
            return ref, None, reason.splitlines()[-1] if reason else type(exc).__name__

    def cancel(self):
        for ref in self._pending:
            self.ray.cancel(ref, force=True)
        self._pending.clear()


EXECUTORS = ("process", "ray")


def make(name, *, address=None, data_dir=None, progress=True, datasets=None, save_models=None):
    """The executor called ``name`` (one of :data:`EXECUTORS`)."""
    if name == "process":
        if address is not None:
            raise UserError("--address needs --executor ray")
        return InProcess(data_dir, progress=progress, datasets=datasets, save_models=save_models)
    if name == "ray":
        return RayExecutor(address, data_dir, save_models=save_models)
    raise UserError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
