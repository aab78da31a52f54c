"""Reading the arena database never changes its schema; only `latxa arena migrate` and the server's start do."""

from __future__ import annotations

import sqlite3


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {r[0] for r in con.execute("select name from sqlite_master where type='table'")}


def test_a_read_refuses_an_unmigrated_database_and_leaves_it_alone(cli, tmp_path):
    db = tmp_path / "arena.db"
    url = f"sqlite:///{db}"
    res = cli("arena", "ratings", "--db", url, "--format", "json", "--bootstrap", "5")
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "latxa arena migrate --db" in err
    assert "Traceback" not in res.stderr
    assert _tables(db) == set()           # nothing created, no alembic_version either

    res = cli("arena", "migrate", "--db", url)
    assert res.returncode == 0, res.stderr
    assert {"alembic_version", "participants", "battles", "votes"} <= _tables(db)
    res = cli("arena", "ratings", "--db", url, "--format", "json", "--bootstrap", "5")
    assert res.returncode == 0, res.stderr


def test_a_read_does_not_upgrade_an_older_schema(cli, tmp_path):
    from sqlalchemy import text

    from latxa.serving.arena.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'arena.db'}"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:   # as if the database were one revision behind the code
        conn.execute(text("update alembic_version set version_num = 'older'"))
    engine.dispose()
    res = cli("arena", "ratings", "--db", url, "--format", "json")
    assert res.returncode == 2 and "at revision older" in res.stderr, res.stderr
    with sqlite3.connect(tmp_path / "arena.db") as con:
        assert con.execute("select version_num from alembic_version").fetchall() == [("older",)]
