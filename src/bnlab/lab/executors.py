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
string: the driver marks its trials failed with it and the sweep goes on (``bnlab run`` then
exits 1 and says how many failed).

Joining a cluster (``address``) is bounded: the address must accept a connection within
:data:`CONNECT_TIMEOUT` seconds, and a refusal (a cluster with token authentication, which
``ray start --head`` turns on since Ray 2.5x, joined without ``RAY_AUTH_MODE=token``) comes back
within about 20 s as one line saying what to do. The local Ray bnlab starts ends with the driver:
``ray.shutdown`` on a normal exit, and a watchdog process (:func:`watch`) kills what is left of it
(Ray's agents outlive a driver killed with ``kill -9``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path

from bnlab.errors import UserError

CONNECT_TIMEOUT = 15.0  # seconds for a cluster's address (--address) to accept a connection


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
    import ray

    from bnlab.lab import runtime, train

    runtime.configure_xla(vectorized=together, convolutional=runtime.trains_convolutions(group))
    runtime.enable_compilation_cache()
    outcomes = train.train_unit(group, together, _WORKER_DATASETS, data_dir, progress=False,
                                save_models=save_models)
    node = ray.get_runtime_context().get_node_id()  # which machine trained it, in the results
    return [(history, {**results, "ray_node": node}) for history, results in outcomes]


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
            if address:
                _join(ray, address)
            else:
                _start_watchdog()  # first: it sees Ray's processes as they start
                # "local": a Ray of its own, even where `ray start` left a cluster on this machine
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                         include_dashboard=False, log_to_driver=False, logging_level="ERROR")
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


def _join(ray, address, timeout=CONNECT_TIMEOUT):
    """``ray.init(address=...)``, bounded (see the module's docstring); UserError in one line."""
    fix = ("give the address `ray start --head` printed (HOST:6379), and for a cluster with token "
           "authentication set RAY_AUTH_MODE=token (its token in ~/.ray/auth_token or "
           "RAY_AUTH_TOKEN)")
    if address != "auto":
        host, _, port = address.split("://", 1)[-1].rpartition(":")
        if not port.isdigit():
            raise UserError(f"--address {address}: expected HOST:PORT or ray://HOST:PORT; {fix}")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout).close()
        except OSError as exc:
            raise UserError(f"--address {address}: no Ray cluster answered within {timeout:.0f} s "
                             f"({exc.strerror or exc}); {fix}") from None
    try:  # a cluster's workers get the driver's backend; local ones inherit it
        with _quiet_stderr():  # Ray's C++ client logs each retry there
            ray.init(address=address, runtime_env={"env_vars": {
                "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}},
                log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"--address {address}: could not join the Ray cluster ({reason}); "
                         f"{fix}") from None


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null within the block (native code's logs included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _start_watchdog():
    """A process that kills this driver's local Ray once the driver is gone (:func:`watch`)."""
    subprocess.Popen([sys.executable, "-c", "from bnlab.lab.executors import watch; "
                      f"watch({os.getpid()})"], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def watch(driver, every=1.0):
    """Remember the descendants of process ``driver`` while it lives; when it has gone, kill those
    still running (a pid is matched with its start time, so a reused one is spared)."""
    import psutil

    known = {}
    try:
        parent = psutil.Process(driver)
        while parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE:
            for child in parent.children(recursive=True):
                if child.pid != os.getpid():
                    known.setdefault(child.pid, child)
            time.sleep(every)
    except psutil.NoSuchProcess:
        pass
    alive = [p for p in known.values() if p.is_running()]  # is_running checks the start time
    for process in alive:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(alive, timeout=5)
    for process in left:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


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
