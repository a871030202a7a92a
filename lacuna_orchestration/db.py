"""Engines for the one store behind everything: SQLite in development, PostgreSQL in production.

Both the catalog and the audit chain live here, on one ``MetaData`` so one ``create_all`` (or one
Alembic migration) makes the whole schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.errors import StoreError

metadata = MetaData()


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (fast COPY); other drivers stay as named."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine; None for an in-memory or URI database."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def make_engine(url: str, *, schema: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine ready for concurrent appends; create the SQLite folder if needed."""
    url = normalize_url(url)
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": 30, "check_same_thread": False}
    elif schema:
        connect_args = {"options": f"-csearch_path={schema}"}
    try:
        engine = create_engine(url, connect_args=connect_args, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as err:
        raise StoreError(f"cannot use database URL {url!r}: {err}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLAlchemy's pysqlite driver opens transactions lazily; take the write lock at BEGIN
        # so concurrent appenders serialise instead of failing on lock upgrade.
        event.listen(engine, "begin", _sqlite_begin)
    elif schema:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine


READ_ONLY = "lacuna_read_only"


def reading(engine: Engine) -> Connection:
    """A connection for reads only. On SQLite its transaction starts with a deferred BEGIN —
    a WAL snapshot without the write lock — so a reader (the governor catching up, an API
    read) never queues behind a writer's commit the way ``BEGIN IMMEDIATE`` would."""
    return engine.execution_options(**{READ_ONLY: True}).connect()


def reading_once(engine: Engine) -> Connection:
    """A connection for ONE read statement. On PostgreSQL it runs in autocommit: a single
    statement is its own snapshot anyway, and the BEGIN/ROLLBACK round trips around it cost
    as much as the query (``SELECT 1``: 0.62-0.69 ms inside a transaction, 0.33 ms without).
    The gate's exception lookup on a denial goes through here. SQLite: as ``reading``."""
    if is_sqlite(engine):
        return reading(engine)
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _sqlite_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    # on the driver's connection: the hot commit path skips SQLAlchemy's execution context
    conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
        "BEGIN" if read_only else "BEGIN IMMEDIATE"
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" listener issue BEGIN IMMEDIATE
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged audit record survives power loss
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def check_connection(engine: Engine) -> None:
    """Fail with one line naming the database when it cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise StoreError(
            f"cannot reach database {engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from None
