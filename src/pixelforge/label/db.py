"""annotations.sqlite: every edit of every field as a history row (WAL mode); the current value is the last.

Nothing is overwritten: an edit appends a row holding the new value, the value it replaced, its
annotator and time. Each (key, field) has a version (its number of edits). A client sends the version
it saw; when another annotator saved in between, the edit is still appended (last one wins) and is
marked ``conflict``: the writer is told whose edit it replaced, and that annotator finds it in
:meth:`AnnotationDB.notices`. A ``client_id`` makes a retried request idempotent.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DB_NAME = "annotations.sqlite"
KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_+=-]{0,199}$")
ANNOTATOR_RE = re.compile(r"^[\w .@-]{1,64}$")
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
STATUSES = ("accepted", "skipped")

SCHEMA = """
CREATE TABLE IF NOT EXISTS edits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT,              -- JSON
    previous TEXT,           -- JSON of the value this edit replaced (null for the first)
    previous_annotator TEXT,
    annotator TEXT NOT NULL,
    time TEXT NOT NULL,      -- ISO 8601 UTC
    version INTEGER NOT NULL, -- 1 for the first edit of (key, field)
    base_version INTEGER,    -- the version the annotator saw
    conflict INTEGER NOT NULL DEFAULT 0,
    client_id TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS edits_key_field ON edits (key, field, version);
CREATE INDEX IF NOT EXISTS edits_field_key ON edits (field, key);
CREATE INDEX IF NOT EXISTS edits_prev_annotator ON edits (previous_annotator, conflict, id);
CREATE TABLE IF NOT EXISTS session (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def check_key(key: str) -> str:
    """A sample key as it may appear in a request: no dots, slashes or other path characters."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(f"key {key!r}: letters, digits, '_', '-', '+', '=' only (at most 200)")
    return key


def check_annotator(name: str) -> str:
    if not isinstance(name, str) or not ANNOTATOR_RE.match(name):
        raise ValueError(f"annotator {name!r}: 1-64 letters, digits, spaces, '.', '@', '_' or '-'")
    return name


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Saved:
    """What an edit did: its id and version, and the edit it replaced when another annotator made it."""

    id: int
    version: int
    conflict: dict[str, Any] | None  # {annotator, value, time, version} of the replaced edit, or None
    duplicate: bool = False  # a retry of an edit already stored (same client_id)


class AnnotationDB:
    """The SQLite history of one labelling project. Thread-safe; one writer at a time (SQLite's rule)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        con = self._con()
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(SCHEMA)
        con.commit()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=FULL")  # every acknowledged edit survives a power cut
            con.row_factory = sqlite3.Row
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- session settings (task, classes, pairs) --------------------------------------------------
    def get_setting(self, name: str, default: Any = None) -> Any:
        row = self._con().execute("SELECT value FROM session WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_setting(self, name: str, value: Any) -> None:
        with self._write_lock:
            self._con().execute(
                "INSERT INTO session (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                "SET value = excluded.value",
                (name, json.dumps(value)),
            )

    # -- edits ------------------------------------------------------------------------------------
    def save(
        self,
        key: str,
        field: str,
        value: Any,
        annotator: str,
        base_version: int | None = None,
        client_id: str | None = None,
    ) -> Saved:
        """Append one edit of ``key``/``field``; the previous value stays in the history."""
        check_key(key)
        check_annotator(annotator)
        if client_id is not None and not CLIENT_ID_RE.match(client_id):
            raise ValueError(f"client_id {client_id!r}: 8-64 letters, digits, '_' or '-'")
        with self._write_lock:
            con = self._con()
            con.execute("BEGIN IMMEDIATE")  # also serialises writers of other processes
            try:
                saved = self._append(con, key, field, value, annotator, base_version, client_id)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return saved

    def update_many(self, keys: list[str], field: str, change: Callable[[Any], Any], annotator: str) -> int:
        """Set ``field`` of every key to ``change(its current value or None)`` in one transaction (a
        bulk edit such as tagging a selection): the values are read under the write lock, so an edit
        made meanwhile by another process is built on, not lost. Keys whose value does not change get
        no edit. All are stored or none; returns how many were."""
        check_annotator(annotator)
        for key in keys:
            check_key(key)
        changed = 0
        with self._write_lock:
            con = self._con()
            con.execute("BEGIN IMMEDIATE")
            try:
                for key in dict.fromkeys(keys):
                    last = con.execute(
                        "SELECT value FROM edits WHERE key = ? AND field = ? ORDER BY version DESC LIMIT 1",
                        (key, field),
                    ).fetchone()
                    have = None if last is None else json.loads(last["value"])
                    want = change(have)
                    if want != have:
                        self._append(con, key, field, want, annotator, None, None)
                        changed += 1
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return changed

    @staticmethod
    def _append(
        con: sqlite3.Connection,
        key: str,
        field: str,
        value: Any,
        annotator: str,
        base_version: int | None,
        client_id: str | None,
    ) -> Saved:
        """The edit as a new history row, inside the caller's transaction."""
        if client_id is not None:
            dup = con.execute("SELECT id, version FROM edits WHERE client_id = ?", (client_id,)).fetchone()
            if dup is not None:
                return Saved(dup["id"], dup["version"], None, duplicate=True)
        last = con.execute(
            "SELECT value, annotator, time, version FROM edits WHERE key = ? AND field = ? "
            "ORDER BY version DESC LIMIT 1",
            (key, field),
        ).fetchone()
        version = 1 if last is None else last["version"] + 1
        # a conflict: someone else saved a version this annotator had not seen
        conflict = (
            last is not None
            and base_version is not None
            and base_version < last["version"]
            and last["annotator"] != annotator
        )
        cur = con.execute(
            "INSERT INTO edits (key, field, value, previous, previous_annotator, annotator, time, version, "
            "base_version, conflict, client_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                field,
                json.dumps(value, ensure_ascii=False),
                None if last is None else last["value"],
                None if last is None else last["annotator"],
                annotator,
                now_iso(),
                version,
                base_version,
                int(conflict),
                client_id,
            ),
        )
        info = None
        if conflict:
            info = {
                "annotator": last["annotator"],
                "value": json.loads(last["value"]),
                "time": last["time"],
                "version": last["version"],
            }
        return Saved(cur.lastrowid, version, info)

    def current_values(self, field: str) -> dict[str, Any]:
        """{key: latest value} of one field over all keys."""
        rows = (
            self._con()
            .execute(
                "SELECT e.key, e.value FROM edits e JOIN (SELECT key, max(version) AS v FROM edits WHERE field = ? "
                "GROUP BY key) m ON e.key = m.key AND e.version = m.v WHERE e.field = ?",
                (field, field),
            )
            .fetchall()
        )
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def current(self, key: str) -> dict[str, dict[str, Any]]:
        """{field: {value, version, annotator, time}} of the latest edit of each field of ``key``."""
        rows = (
            self._con()
            .execute(
                "SELECT e.field, e.value, e.version, e.annotator, e.time FROM edits e JOIN "
                "(SELECT field, max(version) AS v FROM edits WHERE key = ? GROUP BY field) m "
                "ON e.field = m.field AND e.version = m.v WHERE e.key = ?",
                (key, key),
            )
            .fetchall()
        )
        return {
            r["field"]: {
                "value": json.loads(r["value"]),
                "version": r["version"],
                "annotator": r["annotator"],
                "time": r["time"],
            }
            for r in rows
        }

    def all_current(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{key: {field: {value, version, annotator, time}}} for every annotated key."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        rows = (
            self._con()
            .execute(
                "SELECT e.key, e.field, e.value, e.version, e.annotator, e.time FROM edits e JOIN "
                "(SELECT key, field, max(version) AS v FROM edits GROUP BY key, field) m "
                "ON e.key = m.key AND e.field = m.field AND e.version = m.v"
            )
            .fetchall()
        )
        for r in rows:
            out.setdefault(r["key"], {})[r["field"]] = {
                "value": json.loads(r["value"]),
                "version": r["version"],
                "annotator": r["annotator"],
                "time": r["time"],
            }
        return out

    def history(self, key: str | None = None) -> list[dict[str, Any]]:
        """Every edit (of ``key``, or of all keys) in the order it was made."""
        sql = "SELECT * FROM edits" + (" WHERE key = ?" if key is not None else "") + " ORDER BY id"
        rows = self._con().execute(sql, (key,) if key is not None else ()).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["value"] = json.loads(d["value"]) if d["value"] is not None else None
            d["previous"] = json.loads(d["previous"]) if d["previous"] is not None else None
            d["conflict"] = bool(d["conflict"])
            out.append(d)
        return out

    def notices(self, annotator: str, after_id: int = 0) -> list[dict[str, Any]]:
        """Edits by others that replaced an edit of ``annotator`` they had not seen (newest last)."""
        rows = (
            self._con()
            .execute(
                "SELECT id, key, field, value, previous, annotator, time FROM edits WHERE conflict = 1 AND "
                "previous_annotator = ? AND id > ? ORDER BY id",
                (annotator, after_id),
            )
            .fetchall()
        )
        return [
            {
                "id": r["id"],
                "key": r["key"],
                "field": r["field"],
                "value": json.loads(r["value"]),
                "your_value": json.loads(r["previous"]),
                "by": r["annotator"],
                "time": r["time"],
            }
            for r in rows
        ]

    def done_keys(self) -> set[str]:
        """Keys with a status (accepted or skipped): the items a person has finished."""
        rows = self._con().execute("SELECT DISTINCT key FROM edits WHERE field = 'status'").fetchall()
        return {r["key"] for r in rows}

    def count(self) -> int:
        return int(self._con().execute("SELECT count(*) FROM edits").fetchone()[0])
