"""Measure CsvDecoder.rows throughput (plain and gzip) against a bare csv.reader baseline.

Usage: .venv/bin/python scripts/csv_decode_speed.py [ROWS]   (default 1,000,000 rows of 12 columns)
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import shutil
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from tap_linkedin_crm.decoding import ColumnType, CsvDecoder

SPEC: dict[str, ColumnType] = {
    "crmRecordId": "string",
    "recordType": "string",
    "firstName": "string",
    "lastName": "string",
    "email": "string",
    "title": "string",
    "crmCompanyName": "string",
    "linkedInProfileUrl": "string",
    "notAtCompany": "boolean",
    "matchScore": "integer",
    "flaggedAt": "timestamp",
    "lastSyncedAt": "timestamp",
}


def generate(path: Path, rows: int) -> None:
    """Write `rows` rows of about 200 bytes each."""
    rnd = random.Random(1)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\r\n")
        writer.writerow(SPEC)
        for i in range(rows):
            writer.writerow(
                [
                    f"0035g00000{i:08d}AAA",
                    rnd.choice(["Contact", "Lead"]),
                    rnd.choice(["Zoë", "Anna", "Li Lei", "Jean-Luc", "Ørsted"]),
                    f"Smith-{i % 997}",
                    f"person.{i}@example-company.com",
                    rnd.choice(["Director of Sales", 'VP "Growth", EMEA', "Account Executive"]),
                    rnd.choice(["Acme, Inc.", "Globex Corporation", "Initech"]),
                    f"https://www.linkedin.com/in/person-{i:08d}",
                    rnd.choice(["true", "false"]),
                    str(rnd.randrange(100_000)),
                    str(1_700_000_000_000 + rnd.randrange(10**11)),
                    (
                        f"2025-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d} "
                        f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}"
                    ),
                ]
            )


def measure(name: str, rows: int, run: t.Callable[[], int]) -> None:
    """Print the best of three runs."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
    if count != rows:
        msg = f"{name}: {count} rows, expected {rows}"
        raise SystemExit(msg)
    print(f"{name:34s} {rows / best:12,.0f} rows/s {best / rows * 1e9:8.0f} ns/row")


def main() -> None:
    """Generate the files and measure."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "export.csv"
        packed = Path(tmp) / "export.csv.gz"
        generate(plain, rows)
        with plain.open("rb") as source, gzip.open(packed, "wb", compresslevel=6) as target:
            shutil.copyfileobj(source, target)
        size = plain.stat().st_size
        print(f"{rows:,} rows, {size / rows:.0f} bytes/row, {size / 2**20:.0f} MiB plain")

        def baseline() -> int:
            with plain.open("rb") as file:
                text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
                return sum(1 for _ in csv.reader(text)) - 1

        def decoded(path: Path) -> t.Callable[[], int]:
            def run() -> int:
                with path.open("rb") as file:
                    return sum(1 for _ in CsvDecoder(SPEC).rows(file))

            return run

        measure("csv.reader baseline (plain)", rows, baseline)
        measure("CsvDecoder.rows (plain)", rows, decoded(plain))
        measure("CsvDecoder.rows (gzip)", rows, decoded(packed))


if __name__ == "__main__":
    main()
