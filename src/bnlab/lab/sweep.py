"""The resumable loop over trials: the driver of a run, the one writer of the store.

``run_trials(configs, store, ...)``: a trial already finished in the store is skipped (unless
``force``), every other one is claimed, trained by an executor (``bnlab.lab.executors``: in this
process, or as Ray tasks), and then written in one transaction with its history and results, so an
interrupted run leaves nothing marked finished that did not finish and the next run completes only
what is missing. Several processes may run on one store at once: each trains what it claimed.
"""

import math
import time
import traceback

from tqdm.auto import tqdm

from bnlab import signals
from bnlab.errors import UserError
from bnlab.lab import executors
from bnlab.lab.runtime import configure_xla, enable_compilation_cache, trains_convolutions
from bnlab.lab.train import PATHS, trains_together, work_units

POLL_SECONDS = 2.0  # how often a run waiting on other processes' trials looks at the store again


def run_trials(configs, store, *, force=False, data_dir=None, progress=True, log=print,
               path="auto", executor=None, datasets=None, save_models=None):
    """Run every trial of ``configs`` not yet finished in ``store``; returns the ids run here.

    ``path="auto"`` trains the seeds of each arm together as one compiled program where that is
    faster (JAX, dense models: ``bnlab.lab.multiseed``), and each trial with Keras's ``fit``
    elsewhere; ``path="together"`` trains every arm's seeds together (JAX); ``path="fit"`` always
    uses ``fit`` (``train.trains_together``). Results record the path that produced them.

    This is the driver: it claims a unit's trials in the store (``Store.claim``: atomic, with this
    process as owner and a lease renewed while it runs), gives the claimed ones to ``executor``
    (default :class:`bnlab.lab.executors.InProcess`; ``datasets`` is its loaded-data cache), and
    writes each result in one transaction. A trial another live process is running is left to it;
    once everything else is done the run waits for those, and claims any whose owner died, so
    N concurrent runs train each trial once and the last to end has stored them all. A finished
    trial is trained again only with ``force``. A trial whose training loss became NaN or infinite
    is stored with ``results["diverged"]``. Interrupting (Ctrl-C, or SIGTERM: ``bnlab.signals``)
    marks every trial this run holds failed and re-raises; a killed process leaves them running
    until its death is noticed.
    ``save_models``: a folder where every trial run keeps its trained model (``train.run_trial``), for
    the default executor (an executor given here was made with its own ``save_models``).
    """
    if path not in PATHS:
        raise UserError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
    executor = executor or executors.InProcess(data_dir, progress=progress, datasets=datasets,
                                               save_models=save_models)
    enable_compilation_cache()
    todo = [c for c in configs if force or not store.is_finished(store.trial_id(c))]
    skipped = len(configs) - len(todo)
    if skipped:
        log(f"{skipped} of {len(configs)} trials already finished in {store.path}; "
            f"running the {len(todo)} missing" + (" (use --force to rerun them)" if todo else ""))
    queue = work_units(todo, path)
    configure_xla(vectorized=any(len(group) > 1 for group in queue),
                  convolutional=trains_convolutions(todo))
    forced = {store.trial_id(c) for c in todo} if force else set()
    in_flight, waiting, done, announced = {}, [], [], 0
    with tqdm(total=len(todo), desc="trials", unit="trial", disable=not progress or not todo,
              dynamic_ncols=True) as bar, store.keep_alive(), signals.writing():
        try:
            while queue or in_flight or waiting:
                if signals.received():  # a Ctrl-C that some library swallowed still stops us
                    raise KeyboardInterrupt
                while queue and len(in_flight) < executor.slots:
                    group = queue.pop(0)
                    mine, held = _claim(store, group, forced)
                    waiting += held
                    if mine:
                        together = trains_together(mine[0], path)
                        in_flight[executor.submit(mine, together)] = mine
                if in_flight:
                    handle, outcomes, error = executor.next_done()
                    if signals.received():  # swallowed while it trained: not stored as finished
                        raise KeyboardInterrupt
                    group = in_flight.pop(handle)
                    done += _record(store, group, outcomes, error, bar, log)
                elif waiting:
                    if len(waiting) != announced:
                        log(f"waiting for {len(waiting)} trial(s) running in another process")
                        announced = len(waiting)
                    time.sleep(POLL_SECONDS)
                    queue = work_units([c for c in waiting
                                        if not store.is_finished(store.trial_id(c))], path)
                    waiting = []
        except BaseException as exc:
            executor.cancel()
            reason = "".join(traceback.format_exception_only(exc)).strip()
            store.fail_mine(reason or type(exc).__name__)  # claimed but not yet submitted too
            raise
    return done


def _claim(store, group, forced):
    """Claim what can be claimed of ``group``; returns (claimed configs, configs held elsewhere).
    ``forced`` ids may take a finished trial, once each."""
    mine, held = [], []
    for config in group:
        trial_id = store.trial_id(config)
        if store.claim(config, force=trial_id in forced):
            mine.append(config)
        elif not store.is_finished(trial_id):
            held.append(config)
        forced.discard(trial_id)
    return mine, held


def _record(store, group, outcomes, error, bar, log):
    """Write a unit's outcome: each trial finished (diverged noted) or, on ``error``, failed."""
    stored = []
    for i, config in enumerate(group):
        trial_id = store.trial_id(config)
        label = f"{config['arm']} seed {config['seed']}"
        if error is not None:
            store.fail(trial_id, error)
            log(f"{label}: failed ({error})")
            continue
        history, results = outcomes[i]
        at = diverged_at(history)
        if at is not None:
            results = {**results, "diverged": at}
        if store.finish(trial_id, history, results):
            stored.append(trial_id)
        bar.update(1)
        bar.set_postfix_str(f"{label}: " + (f"diverged at {at}" if at else
                                            f"test acc {results['test_accuracy']:.4f}"))
    return stored


def diverged_at(history):
    """Where the training loss first became NaN or infinite (``"epoch N"`` / ``"step N"``), or
    None if it stayed finite."""
    for row in history:
        for name in ("loss", "batch_loss"):
            value = row.get(name)
            if value is not None and not math.isfinite(value):
                return f"epoch {row['epoch']}" if row.get("epoch") else f"step {row['step']}"
    return None
