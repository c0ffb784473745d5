"""Measure compiled stream maps against the SDK's `StreamMap.transform`, per row.

For each configuration (identity, the md5 expression, two deselected columns, flattening depth 1)
it builds an SDK tap whose one stream has the records schema, takes the stream's outputs from
`mapped_outputs` twice (compiled, and `compile_maps=False`: the SDK's transform on the selected
record), and times `transform` over the same synthetic rows. For scale it also times two things
every configuration pays anyway: `orjson.dumps` of the output record (the tap's encoder) and
`json.dumps` of the row (the plain-Python baseline). Each figure is the best of `--runs` runs.

Usage: .venv/bin/python scripts/transform_speed.py [--rows 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import time
import typing as t

import orjson
from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES
from tap_linkedin_crm.output.transforms import mapped_outputs
from tap_linkedin_crm.streams import records_schema

RECORDS = "crm_data_validation_records"
SCHEMA = records_schema(DEFAULT_COLUMN_TYPES)
CONFIGURATIONS: dict[str, tuple[dict[str, t.Any], tuple[str, ...]]] = {
    "identity": ({}, ()),
    "md5 expression": (
        {"stream_maps": {RECORDS: {"email": "md5(email) if email else None"}}},
        (),
    ),
    "two deselected columns": ({}, ("title", "linkedInCompanyName")),
    "flattening depth 1": ({"flattening_enabled": True, "flattening_max_depth": 1}, ()),
}
_FIRST = ("Anna", "José", "Zoë", "Łukasz", "Søren", "Mohammed", "Ngozi", "李", "さくら", "Иван")
_LAST = ("Müller", "García", "O'Neil", "Nguyễn", "Smith, Jr.", "Kowalski", "王", "Dubois")
_TITLES = ("VP Sales", "Head of Sales\nEMEA", "Director, Procurement", "CTO", "", "営業部長")
_COMPANIES = ("Contoso Ltd.", "Fabrikam, Inc.", 'The "Best" Company', "Ñandú S.A.", "株式会社")


def synthetic_rows(count: int) -> list[dict[str, t.Any]]:
    """Complete rows shaped like the records schema (a third with an undeclared column)."""
    rnd = random.Random(7)
    rows = []
    for i in range(count):
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        company = rnd.choice(_COMPANIES)
        flagged = f"2025-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}T10:11:12Z"
        rows.append(
            {
                "crmInstanceId": "urn:li:crmInstance:(DYNAMICS,1)",
                "jobId": 7_300_000_000 + i // 100_000,
                "exportStartAt": 1_700_000_000_000,
                "exportEndAt": 1_700_086_400_000,
                "fileIndex": i // 100_000,
                "rowNumber": i % 100_000 + 1,
                "crmRecordId": f"0035g00000{i:08d}AAA",
                "recordType": rnd.choice(("Contact", "Lead")),
                "firstName": first,
                "lastName": last,
                "email": None if i % 10 == 0 else f"person.{i}@example-company.com",
                "title": rnd.choice(_TITLES),
                "crmCompanyName": company,
                "linkedInCompanyName": company if i % 4 else None,
                "linkedInProfileUrl": f"https://www.linkedin.com/in/person-{i:08d}",
                "notAtCompany": rnd.random() < 0.1,
                "flaggedAt": flagged,
                "lastSyncedAt": flagged,
                "extraColumns": {"territory": rnd.choice(("EMEA", "NA", "APAC"))}
                if i % 3 == 0
                else None,
                "invalidValues": None,
            }
        )
    return rows


def make_tap(config: dict[str, t.Any], deselected: tuple[str, ...]) -> Tap:
    """An SDK tap with one records stream (no rows: only its stream maps are used)."""

    class RowsStream(Stream):
        name = RECORDS
        primary_keys = ("crmInstanceId", "jobId", "fileIndex", "rowNumber")

        def get_records(self, context: t.Any) -> t.Iterator[dict[str, t.Any]]:  # noqa: ARG002, ANN401
            yield from ()

    class RowsTap(Tap):
        name = "tap-rows"
        config_jsonschema = th.PropertiesList().to_dict()

        def discover_streams(self) -> list[Stream]:
            return [RowsStream(self, schema=SCHEMA)]

    catalog = RowsTap(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"][0]["metadata"]:
        crumb = tuple(entry["breadcrumb"])
        entry["metadata"]["selected"] = not (len(crumb) == 2 and crumb[1] in deselected)
    return RowsTap(config=config, catalog=catalog, validate_config=True)


def best_ns_per_row(run: t.Callable[[], object], rows: int, runs: int) -> float:
    """Best of `runs` timings, in ns per row."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / rows * 1e9


def loop(
    function: t.Callable[[dict[str, t.Any]], object], rows: list[dict[str, t.Any]]
) -> t.Callable[[], object]:
    """A loop applying `function` to every row, keeping only the last result."""

    def run() -> object:
        last = None
        for row in rows:
            last = function(row)
        return last

    return run


def main() -> None:
    """Print a table: ns per row for each configuration."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = synthetic_rows(args.rows)

    json_ns = best_ns_per_row(loop(json.dumps, rows), args.rows, args.runs)
    print(f"{args.rows:,} rows; best of {args.runs} runs; ns per row")
    print(f"for scale: json.dumps(row) {json_ns:,.0f}")
    print(
        f"{'configuration':24s} {'compiled':>9s} {'SDK transform':>14s} {'speed-up':>9s} "
        f"{'+ orjson.dumps':>15s}"
    )
    for name, (config, deselected) in CONFIGURATIONS.items():
        tap = make_tap(config, deselected)
        stream = tap.streams[RECORDS]
        stream_maps = tap.config.get("stream_maps")
        (compiled,) = mapped_outputs(stream, stream_maps)
        (sdk,) = mapped_outputs(stream, stream_maps, compile_maps=False)
        if not compiled.compiled:
            msg = f"{name}: not compiled"
            raise SystemExit(msg)
        if [compiled.transform(row) for row in rows[:1000]] != [
            sdk.transform(row) for row in rows[:1000]
        ]:
            msg = f"{name}: compiled and SDK records differ"
            raise SystemExit(msg)
        compiled_ns = best_ns_per_row(loop(compiled.transform, rows), args.rows, args.runs)
        sdk_ns = best_ns_per_row(loop(sdk.transform, rows), args.rows, 1)
        transform = compiled.transform
        encoded_ns = best_ns_per_row(
            loop(lambda row, transform=transform: orjson.dumps(transform(row)), rows),
            args.rows,
            args.runs,
        )
        print(
            f"{name:24s} {compiled_ns:9,.0f} {sdk_ns:14,.0f} {sdk_ns / compiled_ns:8,.0f}x "
            f"{encoded_ns:15,.0f}"
        )


if __name__ == "__main__":
    main()
