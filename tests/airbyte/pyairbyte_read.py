"""Drive the Airbyte source with PyAirbyte, offline; run by the PyAirbyte venv's interpreter.

Usage: pyairbyte_read.py <source executable> <config.json> <reads>

`AIRBYTE_OFFLINE_MODE=1` (set by the caller) keeps PyAirbyte away from Airbyte's registry and
telemetry. The source is the local executable; each read goes into PyAirbyte's default DuckDB
cache (under `AIRBYTE_CACHE_ROOT`), which keeps the state between reads. Prints one JSON object:
the check, the streams, and for each read the records PyAirbyte processed and what its tables hold.
"""

from __future__ import annotations

import json
import sys
import typing as t
from pathlib import Path

import airbyte as ab
from sqlalchemy import text


def table_counts(cache: t.Any, stream: str) -> dict[str, t.Any]:
    """Rows, distinct primary keys and rows per job (tables with a `jobId`) of a stream's table."""
    table = f"{cache.schema_name}.{stream}"
    keys = [column.lower() for column in cache.processor.catalog_provider.get_primary_keys(stream)]
    with cache.get_sql_engine().connect() as connection:
        rows = connection.execute(text(f"select count(*) from {table}")).scalar_one()  # noqa: S608
        distinct = connection.execute(
            text(f"select count(*) from (select distinct {', '.join(keys)} from {table})")  # noqa: S608
        ).scalar_one()
        columns = connection.execute(
            text(
                "select column_name from information_schema.columns"
                " where table_schema = :schema and table_name = :table"
            ),
            {"schema": cache.schema_name, "table": stream},
        ).scalars()
        by_job = (
            connection.execute(
                text(f"select jobid, count(*) from {table} group by jobid order by jobid")  # noqa: S608
            ).all()
            if "jobid" in {column.lower() for column in columns}
            else []
        )
    return {
        "rows": rows,
        "distinct_keys": distinct,
        "by_job": {str(job): count for job, count in by_job},
    }


def main() -> None:
    """Check, then read `reads` times into the default cache; print what happened as JSON."""
    executable, config_path, reads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config = json.loads(Path(config_path).read_text())
    source = ab.get_source("source-linkedin-crm", config=config, local_executable=executable)
    source.check()
    source.select_all_streams()
    cache = ab.get_default_cache()
    report: dict[str, t.Any] = {
        "check": "SUCCEEDED",
        "streams": source.get_selected_streams(),
        "cache": str(cache.db_path),
        "reads": [],
    }
    for _ in range(reads):
        result = source.read(cache=cache)
        report["reads"].append(
            {
                "processed_records": result.processed_records,
                "tables": {name: table_counts(cache, name) for name in result.streams},
            }
        )
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
