"""SQLite persistence for the local server's engine.

The engine keeps its whole state in memory and marks what each request
changed; :meth:`Store.save` writes exactly those records in one transaction
before any reply or message leaves the server. So a ``kill -9`` at any
moment loses nothing that was acknowledged: on start, :meth:`Store.load`
reads every record back and the engine re-arms its timers from them
(pending timeouts, leases and retries are fields of the records).

WAL with ``synchronous=NORMAL``: a commit survives the process dying; only a
power loss could drop the last commits, which a development server accepts.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from devstack.localserver.engine import Engine, Promise, Task

_SCHEMA = """
CREATE TABLE IF NOT EXISTS promises (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (id TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def load(self, engine: Engine) -> None:
        promises = [Promise.load(json.loads(b)) for (b,) in self._db.execute("SELECT body FROM promises")]
        tasks = [Task.load(json.loads(b)) for (b,) in self._db.execute("SELECT body FROM tasks")]
        schedules = [json.loads(b) for (b,) in self._db.execute("SELECT body FROM schedules")]
        engine.restore(promises, tasks, schedules)

    def save(self, engine: Engine) -> None:
        """Write every record the engine marked dirty, atomically."""
        if not (engine.dirty_promises or engine.dirty_tasks or engine.dirty_schedules):
            return
        upsert = "INSERT INTO {} (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body"
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany(
                upsert.format("promises"),
                [(i, json.dumps(engine.promises[i].dump())) for i in engine.dirty_promises],
            )
            self._db.executemany(
                upsert.format("tasks"), [(i, json.dumps(engine.tasks[i].dump())) for i in engine.dirty_tasks]
            )
            for i in engine.dirty_schedules:
                s = engine.schedules.get(i)
                if s is None:
                    self._db.execute("DELETE FROM schedules WHERE id = ?", (i,))
                else:
                    self._db.execute(upsert.format("schedules"), (i, json.dumps(s)))
        engine.dirty_promises.clear()
        engine.dirty_tasks.clear()
        engine.dirty_schedules.clear()

    def ready(self) -> bool:
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        self._db.close()
