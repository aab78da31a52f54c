"""Where votes come from for `latxa arena ratings` and `latxa report`: the arena database (a URL, or the default
SQLite), the published dataset's files (a folder with its card, .jsonl.gz, .parquet) or a votes JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def is_db_url(source: str) -> bool:
    return "://" in source


def load_records(source: Optional[str], *, db: Optional[str] = None, config: Optional[str] = None,
                 full_rows: bool = False) -> tuple[list[dict], str]:
    """(records in the published schema, a short description of the source).

    From a database: the rated votes (no control battles, no flagged participants); with ``full_rows`` the
    export's rows (participant fields and conversations too), for the report.
    """
    from latxa.errors import LatxaError

    if source is None or is_db_url(source):
        from latxa.serving.arena.db import open_db, rated_votes

        url = source or db
        _, sf = open_db(url)
        with sf() as s:
            if full_rows:
                from latxa.serving.arena.export import export_rows

                rows = export_rows(s, drop_flagged=True)
            else:
                rows = rated_votes(s)
        return rows, "the arena database"
    path = Path(source)
    if not path.exists():
        raise LatxaError(f"{path}: no such votes file, dataset folder or database URL.")
    from latxa.components.arena.dataset import read_published

    return read_published(path, config), str(path)
