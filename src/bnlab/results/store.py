"""SQLite results store: trials (one row per experiment × arm × seed) and their metric history.

Layout (``PRAGMA user_version`` = ``SCHEMA_VERSION``)::

    trials(id PK, experiment, arm, seed, config JSON, status, results JSON,
           started_at, finished_at, error, owner JSON, lease_until, attempts)
    metrics(trial_id, row, epoch, step, seconds, name, value)   -- long format, PK (trial_id, row, name)

A trial is ``running`` after :meth:`Store.claim` (or :meth:`Store.start`), ``failed`` after
:meth:`Store.fail`, and becomes ``finished`` only inside :meth:`Store.finish`'s single transaction,
which also writes its metrics and results. SQLite's journal (WAL mode) makes that transaction
all-or-nothing even when the process is killed, so a killed run never leaves a trial marked
finished that did not finish.

Claims. Several processes may run trials into one store. :meth:`Store.claim` marks a trial running
in one write transaction (``BEGIN IMMEDIATE``: one writer at a time), with its owner
``{host, pid, started}`` (``started``: the process's start time, so a reused pid is not mistaken for
the owner) and a lease ``lease_until`` (Unix seconds) that :meth:`Store.keep_alive` renews while
training. A running trial is held while its owner lives: on the owner's host, while that process
exists (not a zombie); elsewhere, until its lease expires. A finished trial is only claimed again
with ``force``. ``attempts`` counts the claims of a trial.

This module is the bottom of bnlab's import graph: it imports nothing from bnlab.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import psutil

from bnlab.errors import UserError

SCHEMA_VERSION = 2
LEASE_SECONDS = 120.0  # how long a claim holds without renewal, for owners on another host
STATUSES = ("running", "finished", "failed")
INDEX_KEYS = ("epoch", "step", "seconds")  # the per-row columns; every other key is a metric

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id          TEXT PRIMARY KEY,
    experiment  TEXT NOT NULL,
    arm         TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    config      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    results     TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    error       TEXT,
    owner       TEXT,
    lease_until REAL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS trials_by_experiment ON trials (experiment, status, arm, seed);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id TEXT NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    row      INTEGER NOT NULL,
    epoch    INTEGER,
    step     INTEGER,
    seconds  REAL,
    name     TEXT NOT NULL,
    value    REAL,
    PRIMARY KEY (trial_id, row, name)
);
"""
_MIGRATIONS = {  # from version k to k + 1
    1: ["ALTER TABLE trials ADD COLUMN owner TEXT",
        "ALTER TABLE trials ADD COLUMN lease_until REAL",
        "ALTER TABLE trials ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0"],
}
_EMPTY_ROW = ""  # metric name of a placeholder that keeps a history row with no metrics


class StoreError(UserError):
    """A store that cannot be opened or used; the message is one line and names the file."""


@dataclass(frozen=True)
class Trial:
    id: str
    experiment: str
    arm: str
    seed: int
    config: dict
    status: str
    results: dict
    started_at: str | None
    finished_at: str | None  # when it ended: finished or failed
    error: str | None
    owner: dict | None = None  # {host, pid, started} of the process that last claimed it
    attempts: int = 0          # how many times it was claimed


def this_process() -> dict:
    """The owner written into a claim: host name, pid and the process's start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": psutil.Process().create_time()}


def owner_alive(owner: dict | None, lease_until: float | None, now: float | None = None) -> bool:
    """Whether a claim still holds: on this host, while its process lives; elsewhere, its lease."""
    if not owner:
        return False
    if owner.get("host") == socket.gethostname():
        try:
            process = psutil.Process(owner["pid"])
            return (abs(process.create_time() - owner["started"]) < 1.0
                    and process.status() != psutil.STATUS_ZOMBIE)
        except psutil.AccessDenied:
            return True  # it exists, under another user
        except (psutil.NoSuchProcess, KeyError, TypeError):
            return False
    return (lease_until or 0.0) > (time.time() if now is None else now)


def _json_default(obj: Any) -> Any:
    """Let numpy scalars and arrays through ``json.dumps`` without importing numpy."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, default=_json_default, **kw)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _reason(path: Path, exc: Exception) -> str:
    """SQLite's reason, said plainly where it misleads: a full disk shows as a disk I/O error."""
    import shutil

    text = str(exc)
    if "disk I/O error" in text or "full" in text:
        with suppress(OSError):
            if shutil.disk_usage(path.resolve().parent).free < 1 << 20:
                return f"the disk is full: {text}; free some space and run again"
    if "readonly" in text or "read-only" in text:
        return f"{text}; the store's folder is not writable (read-only mount?)"
    return text


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _opt(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


class Store:
    """The results store at ``path``.

    With ``create`` (the default), a missing store is created with its parent folders; without it,
    ``path`` must already be a bnlab store. Nothing is written into a file that is not one: a
    SQLite file that holds other tables, an empty file opened without ``create``, and a file that
    is not SQLite are refused with a :class:`StoreError` before any write.
    """

    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self.owner = this_process()
        memory = str(path) == ":memory:"
        try:
            if not memory and (read_only or not create) and not self.path.is_file():
                raise StoreError(f"{self.path}: no results store there")
            if not memory and create and not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if read_only:
                self._conn = self._connect_read_only()
                self._check_read_only()
                return
            # IMMEDIATE: a write transaction takes the write lock at BEGIN, so concurrent writers
            # wait on the busy timeout instead of failing to upgrade.
            self._conn = sqlite3.connect(str(path), timeout=60.0, isolation_level="IMMEDIATE")
            # One statement, one snapshot: read apart, another process creating the store could
            # commit in between (version 0, then its tables) and make it look like a foreign file.
            version, tables = self._conn.execute(
                "SELECT (SELECT user_version FROM pragma_user_version), "
                "(SELECT count(*) FROM sqlite_master)").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: store schema version {version} is newer than this "
                                 f"bnlab understands ({SCHEMA_VERSION}); upgrade bnlab")
            if version == 0:
                if tables:
                    raise StoreError(f"{self.path}: a SQLite file of another program (it has "
                                     "tables but no bnlab schema); bnlab leaves it unchanged")
                if not create:
                    raise StoreError(f"{self.path}: not a bnlab results store (empty); bnlab "
                                     "leaves it unchanged")
            self._use_wal()
            self._conn.execute("PRAGMA foreign_keys=ON")
            if version < SCHEMA_VERSION:
                with self._conn:  # DDL does not open a transaction by itself: BEGIN explicitly
                    self._conn.execute("BEGIN IMMEDIATE")
                    version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                    statements = (filter(str.strip, _SCHEMA.split(";")) if version == 0 else
                                  [q for k in range(version, SCHEMA_VERSION) for q in _MIGRATIONS[k]])
                    for statement in statements:
                        self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except StoreError:
            self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.close()
            what = "not a SQLite database" if isinstance(exc, sqlite3.DatabaseError) and \
                "not a database" in str(exc) else "cannot open the results store"
            raise StoreError(f"{self.path}: {what} ({_reason(self.path, exc)})") from None

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that never writes (``mode=ro``). A WAL store on a read-only mount, whose
        shared-memory file cannot be made, is read as immutable: nothing there can change it."""
        uri = self.path.resolve().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if os.access(self.path.parent, os.W_OK) and not _read_only_mount(self.path):
                raise
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)

    def _check_read_only(self) -> None:
        version, tables = self._conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT count(*) FROM sqlite_master)").fetchone()
        if version == 0:
            raise StoreError(f"{self.path}: " + ("a SQLite file of another program; bnlab leaves "
                                                 "it unchanged" if tables else
                                                 "not a bnlab results store (empty)"))
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema version {version}, this bnlab reads "
                             f"{SCHEMA_VERSION}; " + ("upgrade bnlab" if version > SCHEMA_VERSION
                                                      else "open it once with `bnlab run` to "
                                                           "upgrade it"))

    def _use_wal(self, patience=60.0):
        """Switch the file to write-ahead logging (persistent: once any process has, the others
        find it so). The switch needs the file to itself and SQLite does not wait for it on the
        busy timeout, so while another process holds the file (creating the store, say) retry."""
        deadline = time.monotonic() + patience
        while self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def _write(self):
        """One write transaction, begun IMMEDIATE before its first statement, reads included (the
        sqlite3 module would begin it only at the first write, letting another process write
        between a claim's read and its write); SQLite's refusals (read-only file, full disk) as
        a StoreError."""
        try:
            with self.conn:
                if not self.conn.in_transaction:
                    self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: cannot write to the results store "
                             f"({_reason(self.path, exc)})") from None

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    # -- identity --------------------------------------------------------------------------
    @staticmethod
    def trial_id(config: dict) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of ``config``."""
        canonical = _dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    # -- writes (each one transaction) -----------------------------------------------------
    def claim(self, config: dict, *, force: bool = False) -> str | None:
        """Mark the trial of ``config`` running for this process, unless it is finished (without
        ``force``) or running under an owner that is alive; returns its id, or None if not claimed.

        Read and write are one ``BEGIN IMMEDIATE`` transaction, so of several processes claiming
        the same trial exactly one gets it. Claiming resets a trial's results and metrics.
        """
        missing = [k for k in ("experiment", "arm", "seed") if k not in config]
        if missing:
            raise StoreError(f"{self.path}: trial config lacks {', '.join(missing)}")
        tid = self.trial_id(config)
        with self._write() as conn:
            row = conn.execute("SELECT status, owner, lease_until FROM trials WHERE id = ?",
                               (tid,)).fetchone()
            if row is not None:
                status, owner, lease_until = row
                if status == "finished" and not force:
                    return None
                if status == "running" and owner_alive(json.loads(owner or "null"), lease_until):
                    return None
            conn.execute("DELETE FROM metrics WHERE trial_id = ?", (tid,))
            conn.execute(
                "INSERT INTO trials (id, experiment, arm, seed, config, status, started_at, owner, "
                "lease_until, attempts) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, 1) "
                "ON CONFLICT (id) DO UPDATE SET config = excluded.config, status = 'running', "
                "results = NULL, started_at = excluded.started_at, finished_at = NULL, error = NULL, "
                "owner = excluded.owner, lease_until = excluded.lease_until, "
                "attempts = trials.attempts + 1",
                (tid, str(config["experiment"]), str(config["arm"]), int(config["seed"]),
                 _dumps(config, sort_keys=True), _now(), _dumps(self.owner),
                 time.time() + LEASE_SECONDS))
        return tid

    def start(self, config: dict) -> str:
        """Claim the trial of ``config`` whatever its state (a trial seen before is reset)."""
        tid = self.claim(config, force=True)
        if tid is None:
            raise StoreError(f"{self.path}: trial {self.trial_id(config)} is running in another "
                             "process")
        return tid

    def renew(self) -> None:
        """Extend the leases of this process's running trials by :data:`LEASE_SECONDS`."""
        with self._write() as conn:
            conn.execute("UPDATE trials SET lease_until = ? WHERE owner = ? AND status = 'running'",
                         (time.time() + LEASE_SECONDS, _dumps(self.owner)))

    @contextmanager
    def keep_alive(self, every: float = LEASE_SECONDS / 4):
        """Renew this process's leases every ``every`` seconds while the block runs (a thread with
        its own connection: SQLite connections stay in the thread that made them)."""
        stop = threading.Event()

        def renew():
            with Store(self.path) as own:
                while not stop.wait(every):
                    own.renew()

        if str(self.path) != ":memory:":
            threading.Thread(target=renew, daemon=True, name="bnlab-lease").start()
        try:
            yield
        finally:
            stop.set()

    def finish(self, trial_id: str, history: Iterable[dict], results: dict) -> bool:
        """Write the history and results and mark the trial finished, all in one transaction.
        Returns False, writing nothing, if another process has claimed the trial since."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE trials SET status = 'finished', results = ?, finished_at = ?, error = NULL, "
                "lease_until = NULL WHERE id = ? AND owner = ?",
                (_dumps(results or {}), _now(), trial_id, _dumps(self.owner)))
            if cur.rowcount == 0:
                return self._not_owned(trial_id, "finish")
            conn.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
            conn.executemany(
                "INSERT INTO metrics (trial_id, row, epoch, step, seconds, name, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", self._long_rows(trial_id, history))
        return True

    def _not_owned(self, trial_id: str, what: str) -> bool:
        if self.get(trial_id) is None:
            raise StoreError(f"{self.path}: no trial {trial_id} to {what} (claim it first)")
        return False

    @staticmethod
    def _long_rows(trial_id: str, history: Iterable[dict]):
        for i, rec in enumerate(history):
            index = (_opt(rec.get("epoch"), int), _opt(rec.get("step"), int),
                     _opt(rec.get("seconds"), float))
            names = [k for k in rec if k not in INDEX_KEYS and rec[k] is not None]
            for name in names or [_EMPTY_ROW]:
                value = None if name == _EMPTY_ROW else float(rec[name])
                yield (trial_id, i, *index, str(name), value)

    def fail(self, trial_id: str, error: str) -> bool:
        """Mark this process's trial failed with ``error``; False if another process owns it."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE trials SET status = 'failed', error = ?, finished_at = ?, results = NULL, "
                "lease_until = NULL WHERE id = ? AND owner = ?",
                (str(error), _now(), trial_id, _dumps(self.owner)))
            if cur.rowcount == 0:
                return self._not_owned(trial_id, "mark failed")
            conn.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
        return True

    def fail_mine(self, error: str) -> int:
        """Mark every trial this process is running failed with ``error``; returns how many."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE trials SET status = 'failed', error = ?, finished_at = ?, results = NULL, "
                "lease_until = NULL WHERE owner = ? AND status = 'running'",
                (str(error), _now(), _dumps(self.owner))).rowcount

    def delete(self, experiment: str | None = None) -> int:
        """Delete the trials (all statuses) of ``experiment``, or every trial; return how many."""
        where, args = ("WHERE experiment = ?", (experiment,)) if experiment is not None else ("", ())
        with self._write() as conn:
            conn.execute(f"DELETE FROM metrics WHERE trial_id IN (SELECT id FROM trials {where})",
                         args)
            return conn.execute(f"DELETE FROM trials {where}", args).rowcount

    # -- reads -----------------------------------------------------------------------------
    def is_finished(self, trial_id: str) -> bool:
        row = self.conn.execute("SELECT status FROM trials WHERE id = ?", (trial_id,)).fetchone()
        return row is not None and row[0] == "finished"

    _COLUMNS = ("id, experiment, arm, seed, config, status, results, started_at, finished_at, "
                "error, owner, attempts")

    def _trial(self, row: tuple) -> Trial:
        tid, exp, arm, seed, config, status, results, started, finished, error, owner, n = row
        try:
            trial = Trial(tid, exp, arm, seed, json.loads(config), status,
                          json.loads(results) if results else {}, started, finished, error,
                          json.loads(owner) if owner else None, n)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: trial {tid} is damaged (its stored JSON does not "
                             f"read: {exc}); delete that row or use another store") from None
        if not isinstance(trial.config, dict) or not isinstance(trial.results, dict):
            raise StoreError(f"{self.path}: trial {tid} is damaged (its config or results is "
                             "not a JSON object); delete that row or use another store")
        return trial

    def get(self, trial_id: str) -> Trial | None:
        row = self.conn.execute(f"SELECT {self._COLUMNS} FROM trials WHERE id = ?",
                                (trial_id,)).fetchone()
        return None if row is None else self._trial(row)

    def trials(self, experiment: str | None = None, *, status: str | None = "finished") -> list[Trial]:
        """Trials of ``experiment`` (all if None) with ``status`` (any if None), by arm then seed."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES} or None, not {status!r}")
        clauses, args = [], []
        if experiment is not None:
            clauses.append("experiment = ?"), args.append(experiment)
        if status is not None:
            clauses.append("status = ?"), args.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.conn.execute(f"SELECT {self._COLUMNS} FROM trials {where} "
                                 "ORDER BY experiment, arm, seed, id", args).fetchall()
        return [self._trial(r) for r in rows]

    def history(self, trial_id: str) -> list[dict]:
        """The history given to :meth:`finish`, in order. Every row has ``epoch``, ``step`` and
        ``seconds`` (None where absent); a NaN metric comes back as NaN (SQLite stores it NULL)."""
        out: list[dict] = []
        last = None
        for row, epoch, step, seconds, name, value in self.conn.execute(
                "SELECT row, epoch, step, seconds, name, value FROM metrics "
                "WHERE trial_id = ? ORDER BY row, rowid", (trial_id,)):
            if row != last:
                out.append({"epoch": epoch, "step": step, "seconds": seconds})
                last = row
            if name != _EMPTY_ROW:
                out[-1][name] = math.nan if value is None else value
        return out

    def experiments(self) -> list[str]:
        """Names of the experiments with at least one finished trial, sorted."""
        rows = self.conn.execute("SELECT DISTINCT experiment FROM trials "
                                 "WHERE status = 'finished' ORDER BY experiment").fetchall()
        return [r[0] for r in rows]
