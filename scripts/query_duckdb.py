"""Run named SQL queries against a DuckDB file and print the results as one JSON object.

Run it with the interpreter of target-duckdb's venv, which has the pinned duckdb:
`python scripts/query_duckdb.py <database> '{"name": "select ..."}'`. The demo and the end-to-end
tests read what landed this way, without installing duckdb into the tap's own venv.
"""

from __future__ import annotations

import json
import sys

import duckdb


def main() -> None:
    """Print `{name: {"columns": [...], "rows": [[...], ...]}}` for each query."""
    database, queries = sys.argv[1], json.loads(sys.argv[2])
    con = duckdb.connect(database, read_only=True)
    out = {}
    for name, sql in queries.items():
        rel = con.sql(sql)
        out[name] = {"columns": rel.columns, "rows": [list(r) for r in rel.fetchall()]}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
