"""SQLite results store: trials (one row per experiment × arm × seed) and their metric history.

Layout (``PRAGMA user_version`` = ``SCHEMA_VERSION``)::

    trials(id PK, experiment, arm, seed, config JSON, status, results JSON,
           started_at, finished_at, error)
    metrics(trial_id, row, epoch, step, seconds, name, value)   -- long format, PK (trial_id, row, name)

A trial is ``running`` after :meth:`Store.start`, ``failed`` after :meth:`Store.fail`, and becomes
``finished`` only inside :meth:`Store.finish`'s single transaction, which also writes its metrics
and results. SQLite's journal (WAL mode) makes that transaction all-or-nothing even when the process
is killed, so a killed run never leaves a trial marked finished that did not finish.

This module is the bottom of bnlab's import graph: it imports nothing from bnlab.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
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
    error       TEXT
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
_EMPTY_ROW = ""  # metric name of a placeholder that keeps a history row with no metrics


class StoreError(Exception):
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


def _opt(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


class Store:
    """The results store at ``path`` (created with its parent folders if missing)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # IMMEDIATE: a write transaction takes the write lock at BEGIN, so concurrent writers
            # (process-pool executors) wait on the busy timeout instead of failing to upgrade.
            self._conn = sqlite3.connect(str(path), timeout=60.0, isolation_level="IMMEDIATE")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: store schema version {version} is newer than this "
                                 f"bnlab understands ({SCHEMA_VERSION}); upgrade bnlab")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            if version < SCHEMA_VERSION:
                with self._conn:  # DDL does not open a transaction by itself: BEGIN explicitly
                    self._conn.execute("BEGIN IMMEDIATE")
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except StoreError:
            self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.close()
            what = "not a SQLite database" if isinstance(exc, sqlite3.DatabaseError) and \
                "not a database" in str(exc) else "cannot open the results store"
            raise StoreError(f"{self.path}: {what} ({exc})") from None

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
    def start(self, config: dict) -> str:
        """Mark the trial of ``config`` running; a trial seen before is reset (metrics dropped)."""
        missing = [k for k in ("experiment", "arm", "seed") if k not in config]
        if missing:
            raise StoreError(f"{self.path}: trial config lacks {', '.join(missing)}")
        tid = self.trial_id(config)
        with self.conn:
            self.conn.execute("DELETE FROM metrics WHERE trial_id = ?", (tid,))
            self.conn.execute(
                "INSERT INTO trials (id, experiment, arm, seed, config, status, started_at) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?) ON CONFLICT (id) DO UPDATE SET "
                "config = excluded.config, status = 'running', results = NULL, "
                "started_at = excluded.started_at, finished_at = NULL, error = NULL",
                (tid, str(config["experiment"]), str(config["arm"]), int(config["seed"]),
                 _dumps(config, sort_keys=True), _now()))
        return tid

    def finish(self, trial_id: str, history: Iterable[dict], results: dict) -> None:
        """Write the history and results and mark the trial finished, all in one transaction."""
        with self.conn:
            cur = self.conn.execute(
                "UPDATE trials SET status = 'finished', results = ?, finished_at = ?, error = NULL "
                "WHERE id = ?", (_dumps(results or {}), _now(), trial_id))
            if cur.rowcount == 0:
                raise StoreError(f"{self.path}: no trial {trial_id} to finish (call start first)")
            self.conn.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
            self.conn.executemany(
                "INSERT INTO metrics (trial_id, row, epoch, step, seconds, name, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", self._long_rows(trial_id, history))

    @staticmethod
    def _long_rows(trial_id: str, history: Iterable[dict]):
        for i, rec in enumerate(history):
            index = (_opt(rec.get("epoch"), int), _opt(rec.get("step"), int),
                     _opt(rec.get("seconds"), float))
            names = [k for k in rec if k not in INDEX_KEYS and rec[k] is not None]
            for name in names or [_EMPTY_ROW]:
                value = None if name == _EMPTY_ROW else float(rec[name])
                yield (trial_id, i, *index, str(name), value)

    def fail(self, trial_id: str, error: str) -> None:
        with self.conn:
            cur = self.conn.execute(
                "UPDATE trials SET status = 'failed', error = ?, finished_at = ?, results = NULL "
                "WHERE id = ?", (str(error), _now(), trial_id))
            if cur.rowcount == 0:
                raise StoreError(f"{self.path}: no trial {trial_id} to mark failed")
            self.conn.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))

    def delete(self, experiment: str | None = None) -> int:
        """Delete the trials (all statuses) of ``experiment``, or every trial; return how many."""
        where, args = ("WHERE experiment = ?", (experiment,)) if experiment is not None else ("", ())
        with self.conn:
            self.conn.execute(f"DELETE FROM metrics WHERE trial_id IN "
                              f"(SELECT id FROM trials {where})", args)
            return self.conn.execute(f"DELETE FROM trials {where}", args).rowcount

    # -- reads -----------------------------------------------------------------------------
    def is_finished(self, trial_id: str) -> bool:
        row = self.conn.execute("SELECT status FROM trials WHERE id = ?", (trial_id,)).fetchone()
        return row is not None and row[0] == "finished"

    _COLUMNS = "id, experiment, arm, seed, config, status, results, started_at, finished_at, error"

    @staticmethod
    def _trial(row: tuple) -> Trial:
        tid, exp, arm, seed, config, status, results, started, finished, error = row
        return Trial(tid, exp, arm, seed, json.loads(config), status,
                     json.loads(results) if results else {}, started, finished, error)

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
