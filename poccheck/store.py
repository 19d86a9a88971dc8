"""SQLite results store: one row per (model fingerprint, item content key, settings key).

Every result is committed as soon as it exists, so a killed run loses at most the item in flight and a rerun
skips what is done. The database runs in WAL mode; an exclusive lock file keeps two assessments from writing
the same output directory at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

from poccheck.errors import StoreError
from poccheck.private import secure_dir
from poccheck.records import (
    AttentionRecord,
    LatencySample,
    ModelInfo,
    ModelRun,
    ResultRow,
    RunRecord,
    Stored,
    StoredItem,
    StoredResult,
    item_from_record,
)

APP_ID = "poccheck"
SCHEMA_VERSION = 2
DB_NAME = "poccheck.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    suite TEXT NOT NULL,
    item_key TEXT NOT NULL,
    mode TEXT NOT NULL,
    answer_pattern TEXT,
    item TEXT NOT NULL,
    PRIMARY KEY (suite, item_key)
);
CREATE TABLE IF NOT EXISTS model_runs (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    model TEXT NOT NULL,
    fingerprint TEXT,
    settings_key TEXT,
    load_seconds REAL,
    peak_rss INTEGER,
    baseline_rss INTEGER,
    items_done INTEGER NOT NULL DEFAULT 0,
    seconds REAL,
    error TEXT,
    settings TEXT,
    peak_vram INTEGER,
    PRIMARY KEY (run_id, model)
);
CREATE TABLE IF NOT EXISTS attention (
    model_fingerprint TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (model_fingerprint, settings_key, item_key, kind)
);
CREATE TABLE IF NOT EXISTS results (
    model_fingerprint TEXT NOT NULL,
    item_key TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    mode TEXT NOT NULL,
    model TEXT NOT NULL,
    suite TEXT NOT NULL,
    item_id TEXT NOT NULL,
    category TEXT NOT NULL,
    type TEXT NOT NULL,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    choice_logprobs TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency REAL NOT NULL,
    ttft REAL,
    finish_reason TEXT,
    mean_logprob REAL,
    error TEXT,
    prediction TEXT,
    correct INTEGER,
    margin REAL,
    created REAL NOT NULL,
    PRIMARY KEY (model_fingerprint, item_key, settings_key)
);
"""


class Store:
    """The results database of one output directory."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        if not path.exists() and not create:
            raise StoreError(f"no results database at {path}", "run `poccheck assess ... --out DIR` first")
        if path.exists() and path.is_dir():
            raise StoreError(f"{path} is a directory, not a results database")
        existed = path.exists() and path.stat().st_size > 0
        if create:
            secure_dir(path.parent)
            # SQLite gives its -wal and -shm files (which hold results too) the database file's mode: set it first.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        with suppress(OSError):
            os.chmod(path, 0o600)
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.text_factory = _lenient_text
            self.db.execute("PRAGMA busy_timeout = 30000")
            if existed:
                self._check_app()
                self._check_intact()
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            if not existed:
                self.db.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} INSERT OR IGNORE INTO meta VALUES "
                    f"('app', '{APP_ID}'), ('schema', '{SCHEMA_VERSION}'); COMMIT;"
                )
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # sqlite3 decodes a damaged schema's message too
            raise StoreError(
                f"{path} is not a usable poccheck database ({exc})",
                "choose another --out directory, or move the file away to start fresh",
            ) from exc
        os.chmod(path, 0o600)

    def _check_app(self) -> None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
            schema = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(
                f"{self.path} is not a poccheck results database ({exc})",
                "choose another --out directory, or move the file away to start fresh",
            ) from exc
        if row is None or row[0] != APP_ID:
            raise StoreError(f"{self.path} belongs to another program", "choose another --out directory")
        if schema is None or int(schema[0]) > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer poccheck", "upgrade poccheck to read it")
        if int(schema[0]) < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by an older poccheck (results format {schema[0]}, now {SCHEMA_VERSION})",
                "assess into a new --out directory (the old report.html beside it stays readable)",
            )

    def _check_intact(self) -> None:
        problems = [row[0] for row in self.db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise StoreError(
                f"{self.path} is damaged ({'; '.join(problems)})",
                "assess into a new --out directory; the damaged file can be moved away or deleted",
            )

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ runs

    def start_run(self, plan: dict[str, Any]) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started, status, plan) VALUES (?, 'running', ?)",
                (time.time(), json.dumps(plan, ensure_ascii=False)),
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('plan', ?)", (json.dumps(plan, ensure_ascii=False),))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, status: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run_id))

    def plan(self) -> dict[str, Any] | None:
        """The latest run's manifest, or None before any run."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()
        return _loads(row[0], self.path) if row else None

    def runs(self) -> list[RunRecord]:
        return [
            RunRecord(r["id"], r["started"], r["finished"], r["status"], _loads(r["plan"], self.path))
            for r in self.db.execute("SELECT * FROM runs ORDER BY id")
        ]

    def clear_results(self) -> None:
        """Forget every result (``--fresh``); models and runs history stay."""
        with self.transaction() as db:
            db.execute("DELETE FROM results")
            db.execute("DELETE FROM attention")
            db.execute("DROP TABLE IF EXISTS latency_samples")

    # ------------------------------------------------------------------ models and items

    def save_model(self, info: ModelInfo) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?)",
                (info.name, info.fingerprint, json.dumps(asdict(info))),
            )

    def model_infos(self) -> dict[str, ModelInfo]:
        """Descriptions of every model run so far, by model spec."""
        return {
            row["name"]: ModelInfo(**_loads(row["info"], self.path)) for row in self.db.execute("SELECT * FROM models")
        }

    def save_items(self, suite: str, items: list[tuple[str, str, str | None, dict[str, Any]]]) -> None:
        """Store (item_key, mode, answer pattern, item as dict) so reports re-grade without the task file."""
        with self.transaction() as db:
            db.execute("DELETE FROM items WHERE suite = ?", (suite,))
            db.executemany(
                "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)",
                [
                    (suite, key, mode, pattern, json.dumps(item, ensure_ascii=False, default=str))
                    for key, mode, pattern, item in items
                ],  # noqa: E501
            )

    def items(self) -> list[StoredItem]:
        """The stored items, each read back as a TaskItem (a damaged one is a StoreError)."""
        return [
            StoredItem(
                row["suite"], row["item_key"], row["mode"], row["answer_pattern"],
                item_from_record(_loads(row["item"], self.path)),
            )
            for row in self.db.execute("SELECT * FROM items ORDER BY rowid")
        ]  # fmt: skip

    def record_model_run(self, run_id: int, model: str, **fields: Any) -> None:
        columns = ["run_id", "model", *fields]
        values = [run_id, model, *fields.values()]
        updates = ", ".join(f"{c} = excluded.{c}" for c in fields)
        with self.transaction() as db:
            db.execute(
                f"INSERT INTO model_runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(values))}) "
                f"ON CONFLICT (run_id, model) DO UPDATE SET {updates}"
                if fields
                else "INSERT OR IGNORE INTO model_runs (run_id, model) VALUES (?, ?)",
                values,
            )

    def model_runs(self) -> list[ModelRun]:
        runs = []
        for r in self.db.execute("SELECT * FROM model_runs ORDER BY run_id"):
            fields = dict(r)
            fields["settings"] = _loads(fields["settings"], self.path) if fields["settings"] else None
            runs.append(ModelRun(**fields))
        return runs

    # ------------------------------------------------------------------ results

    def rekey_model(self, old: str, new: str) -> int:
        """Move what is stored under ``old``, an earlier fingerprint of the same weights, to ``new``: results,
        attention and model runs, in one transaction. A result already stored under ``new`` wins over its old copy.
        Returns how many results moved (0 when nothing was stored under ``old``)."""
        if old == new:
            return 0
        with self.transaction() as db:
            moved = db.execute(
                "UPDATE OR IGNORE results SET model_fingerprint = ? WHERE model_fingerprint = ?", (new, old)
            )
            db.execute("DELETE FROM results WHERE model_fingerprint = ?", (old,))
            db.execute("UPDATE OR IGNORE attention SET model_fingerprint = ? WHERE model_fingerprint = ?", (new, old))
            db.execute("DELETE FROM attention WHERE model_fingerprint = ?", (old,))
            db.execute("UPDATE model_runs SET fingerprint = ? WHERE fingerprint = ?", (new, old))
            db.execute("UPDATE models SET fingerprint = ? WHERE fingerprint = ?", (new, old))
        return moved.rowcount

    def done_keys(self, fingerprint: str, settings_key: str) -> set[str]:
        """Item keys already answered without error for this model and settings."""
        rows = self.db.execute(
            "SELECT item_key FROM results WHERE model_fingerprint = ? AND settings_key = ? AND error IS NULL",
            (fingerprint, settings_key),
        )
        return {r[0] for r in rows}

    def add_result(self, run_id: int, row: ResultRow) -> None:
        values = {
            "model_fingerprint": row.model_fingerprint, "item_key": row.item_key, "settings_key": row.settings_key,
            "run_id": run_id, "mode": row.mode, "model": row.model, "suite": row.suite, "item_id": row.item_id,
            "category": row.category, "type": row.type, "prompt": storable(row.prompt), "output": storable(row.output),
            "choice_logprobs": json.dumps(list(row.choice_logprobs)) if row.choice_logprobs is not None else None,
            "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens, "latency": row.latency,
            "ttft": row.ttft, "finish_reason": row.finish_reason, "mean_logprob": row.mean_logprob,
            "error": storable(row.error), "prediction": storable(row.prediction), "correct": row.correct,
            "margin": row.margin,
            "created": time.time(),
        }  # fmt: skip
        with self.transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO results ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )

    def update_grades(self, grades: list[tuple[str | None, bool | None, float | None, str, str, str]]) -> None:
        """Rewrite (prediction, correct, margin) of results identified by (fingerprint, item key, settings key)."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE results SET prediction = ?, correct = ?, margin = ? "
                "WHERE model_fingerprint = ? AND item_key = ? AND settings_key = ?",
                grades,
            )

    def results_for(self, fingerprint: str, settings_key: str) -> list[StoredResult]:
        return self.results("WHERE model_fingerprint = ? AND settings_key = ?", (fingerprint, settings_key))

    def save_attention(self, fingerprint: str, settings_key: str, item_key: str, kind: str, payload: Any) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO attention VALUES (?, ?, ?, ?, ?)",
                (fingerprint, settings_key, item_key, kind, storable(json.dumps(payload, ensure_ascii=False))),
            )

    def attention_keys(self, fingerprint: str, settings_key: str) -> set[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT item_key, kind FROM attention WHERE model_fingerprint = ? AND settings_key = ?",
            (fingerprint, settings_key),
        )
        return {(r[0], r[1]) for r in rows}

    def attention(self, fingerprint: str, settings_key: str) -> list[AttentionRecord]:
        rows = self.db.execute(
            "SELECT item_key, kind, payload FROM attention WHERE model_fingerprint = ? AND settings_key = ?",
            (fingerprint, settings_key),
        )
        records = []
        for item_key, kind, payload in rows:
            entry = _loads(payload, self.path)
            records.append(
                AttentionRecord(
                    item_key, kind, bool(entry.get("correct")), entry.get("answer"), entry.get("view"),
                    entry.get("score"),
                )
            )  # fmt: skip
        return records

    def snapshot(self) -> Stored:
        """The folder's plan, runs, items, models, results and attention evidence, for analysis."""
        attention = {
            (fingerprint, settings_key): tuple(self.attention(fingerprint, settings_key))
            for fingerprint, settings_key in self.db.execute(
                "SELECT DISTINCT model_fingerprint, settings_key FROM attention"
            )
        }
        return Stored(
            self.plan() or {},
            tuple(self.runs()),
            tuple(self.items()),  # each item parsed once, here
            self.model_infos(),
            tuple(self.model_runs()),
            tuple(self.results()),
            attention,
            tuple(self.latency_samples()),
        )

    def results(self, where: str = "", parameters: tuple[Any, ...] = ()) -> list[StoredResult]:
        rows = []
        for r in self.db.execute(f"SELECT * FROM results {where} ORDER BY created, rowid", parameters):
            fields = dict(r)
            scores = fields["choice_logprobs"]
            fields["choice_logprobs"] = tuple(_loads(scores, self.path)) if scores else None
            fields["correct"] = None if fields["correct"] is None else bool(fields["correct"])
            rows.append(StoredResult(**fields))
        return rows

    # ------------------------------------------------------------------ probed multiple-choice methods
    # How each served endpoint (base URL + model) scores multiple choice ("logprobs" or "generation"), probed on its
    # first run into this folder and reused on every later one: the method is part of the results' key, and a busy
    # server must not flip it. The table is made on first use, so databases written before it existed open as they
    # are (same schema version), and a poccheck without it ignores it.

    _PROBED_TABLE = (
        "CREATE TABLE IF NOT EXISTS probed_methods (base_url TEXT NOT NULL, model TEXT NOT NULL, "
        "method TEXT NOT NULL, probed REAL NOT NULL, PRIMARY KEY (base_url, model))"
    )

    def probed_method(self, base_url: str, model: str) -> str | None:
        """The multiple-choice method recorded for this endpoint, or None when none was recorded yet."""
        if not self._has_table("probed_methods"):
            return None
        row = self.db.execute(
            "SELECT method FROM probed_methods WHERE base_url = ? AND model = ?", (base_url, model)
        ).fetchone()
        return str(row[0]) if row else None

    def record_probed_method(self, base_url: str, model: str, method: str) -> None:
        """Record (or, after a re-probe, replace) the multiple-choice method of this endpoint."""
        with self.transaction() as db:
            db.execute(self._PROBED_TABLE)
            db.execute(
                "INSERT OR REPLACE INTO probed_methods VALUES (?, ?, ?, ?)", (base_url, model, method, time.time())
            )

    # ------------------------------------------------------------------ single-request latency samples
    # When a run decodes several generations at once, a few of its items are timed again alone afterwards (the
    # runner's latency sample). Made on first use, like probed_methods: older databases open as they are.

    _SAMPLES_TABLE = (
        "CREATE TABLE IF NOT EXISTS latency_samples (model_fingerprint TEXT NOT NULL, settings_key TEXT NOT NULL, "
        "item_key TEXT NOT NULL, run_id INTEGER NOT NULL, latency REAL NOT NULL, ttft REAL, "
        "completion_tokens INTEGER NOT NULL, same_output INTEGER NOT NULL, created REAL NOT NULL, "
        "PRIMARY KEY (model_fingerprint, settings_key, item_key))"
    )

    def _has_table(self, name: str) -> bool:
        found = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return found.fetchone() is not None

    def add_latency_sample(self, run_id: int, sample: LatencySample) -> None:
        with self.transaction() as db:
            db.execute(self._SAMPLES_TABLE)
            db.execute(
                "INSERT OR REPLACE INTO latency_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sample.model_fingerprint, sample.settings_key, sample.item_key, run_id, sample.latency,
                    sample.ttft, sample.completion_tokens, int(sample.same_output), time.time(),
                ),
            )  # fmt: skip

    def sampled_keys(self, fingerprint: str, settings_key: str) -> set[str]:
        """The items of this model and settings already timed alone."""
        if not self._has_table("latency_samples"):
            return set()
        rows = self.db.execute(
            "SELECT item_key FROM latency_samples WHERE model_fingerprint = ? AND settings_key = ?",
            (fingerprint, settings_key),
        )
        return {r[0] for r in rows}

    def latency_samples(self) -> list[LatencySample]:
        if not self._has_table("latency_samples"):
            return []
        rows = self.db.execute(
            "SELECT model_fingerprint, settings_key, item_key, latency, ttft, completion_tokens, same_output "
            "FROM latency_samples ORDER BY created, rowid"
        )
        return [
            LatencySample(f, k, item, latency, ttft, tokens, bool(same))
            for f, k, item, latency, ttft, tokens, same in rows
        ]


def storable(text: str | None) -> str | None:
    """Text SQLite can hold (UTF-8): a lone surrogate, as a server's JSON reply cut inside a UTF-16 pair decodes to,
    becomes U+FFFD instead of an encoding error that would stop the run; a complete pair becomes its character."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _lenient_text(data: bytes) -> str:
    """Decode stored text; damaged bytes become U+FFFD rather than an exception deep inside a query."""
    return data.decode("utf-8", errors="replace")


def _loads(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StoreError(
            f"{path} is damaged: a stored value is not valid JSON ({exc})",
            "assess into a new --out directory; the damaged file can be moved away or deleted",
        ) from None


class OutputLock:
    """An exclusive lock on an output directory, so two assessments never write it at once."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".poccheck.lock"
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot write to the folder {self.path.parent}: {exc.strerror or exc}",
                "choose an --out folder you can write to",
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise StoreError(
                f"another poccheck assessment is writing {self.path.parent}",
                "wait for it to finish, or use a different --out directory",
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
