# ruff: noqa: S608 - the SQL is built from this module's constants only, never from input.
"""`make demo`: the bundled sandbox -> `meltano run tap-linkedin-crm target-duckdb` -> what landed.

Starts the LinkedIn sandbox in-process on a free port (the `demo` scenario: two CRM instances, three
Sales Navigator contracts (one without reporting access), one rate-limited poll and one 503 on a
download, both retried), points Meltano's `sandbox` environment at it through
TAP_LINKEDIN_CRM_API_URL / TAP_LINKEDIN_CRM_TOKEN_URL, adds the analytics settings for this run
(a member refresh token the sandbox issues, as `linkedin-crm-auth` would get one; two weeks of
one-week windows) and selects every stream, runs the pipeline, stops the
sandbox, and prints the streams and row counts, the bookmarks (from Meltano's state), five flagged
CRM records and the activity count per seat (from the DuckDB file). Every run starts from a clean
state and an empty database, so it always shows a first sync. Needs `make meltano` (the Makefile
does it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import typing as t
from pathlib import Path

from tap_linkedin_crm.sandbox import Sandbox
from tap_linkedin_crm.sandbox.cli import load_scenario

ROOT = Path(__file__).resolve().parent.parent
QUERY_DUCKDB = ROOT / "scripts" / "query_duckdb.py"
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
DUCKDB_PYTHON = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
OUTPUT = ROOT / "output"
DATABASE = OUTPUT / "warehouse.duckdb"
LOG = OUTPUT / "demo-meltano.log"
STATE_ID = "sandbox:tap-linkedin-crm-to-target-duckdb"
SCHEMA = "linkedin_crm"
#: A line the tap logged, as Meltano prints it: `<time> [info     ] tap-linkedin-crm <message>`.
TAP_LINE = re.compile(r"\]\s+tap-linkedin-crm\s+(?P<message>.*)$")
STREAMS = ("crm_data_validation_records", "crm_data_validation_exports")
ANALYTICS_STREAMS = (
    "sales_contracts",
    "sales_activities",
    "sales_activity_outcomes",
    "sales_seats",
    "sales_analytics_exports",
)
#: The analytics rows streams, whose state holds a bookmark per (contract, export type).
ANALYTICS_ROWS = ANALYTICS_STREAMS[1:4]
ANALYTICS_DAYS = 14
ANALYTICS_WINDOW_DAYS = 7


def meltano_env(sb: Sandbox) -> dict[str, str]:
    """Meltano's environment: the sandbox environment, pointed at this sandbox's port.

    The analytics settings are this run's: `meltano.yml` configures the CRM family only.
    """
    prefixes = ("TAP_LINKEDIN_CRM_", "TARGET_DUCKDB_", "MELTANO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        MELTANO_CLI_DISABLE_VERSION_CHECK="true",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_ENVIRONMENT="sandbox",
        TAP_LINKEDIN_CRM_API_URL=sb.api_url,
        TAP_LINKEDIN_CRM_TOKEN_URL=sb.token_url,
        TAP_LINKEDIN_CRM_CRM_INSTANCE_IDS=json.dumps(list(sb.scenario.instances)),
        TARGET_DUCKDB_FILEPATH=str(DATABASE),
        TAP_LINKEDIN_CRM_REFRESH_TOKEN=sb.issue_member_tokens()[1],
        TAP_LINKEDIN_CRM_ANALYTICS_START_DATE=analytics_start().isoformat(),
        TAP_LINKEDIN_CRM_ANALYTICS_WINDOW_DAYS=str(ANALYTICS_WINDOW_DAYS),
        TAP_LINKEDIN_CRM__SELECT=json.dumps([f"{s}.*" for s in STREAMS + ANALYTICS_STREAMS]),
    )
    return env


def analytics_start() -> dt.datetime:
    """The first analytics window's start: UTC midnight, `ANALYTICS_DAYS` days before today's."""
    today = dt.datetime.now(tz=dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=ANALYTICS_DAYS)


def progress_line(line: str) -> str | None:
    """The tap's own progress messages from Meltano's log, without Meltano's prefix."""
    match = TAP_LINE.search(line)
    if match is None or "METRIC" in line:
        return None
    message = match.group("message").strip()
    keep = ("summary", "Summary", "WARNING", "ERROR", "retry", "Retry")
    if message.startswith(("CRM instance", "Sync", "Exporting")) or any(k in message for k in keep):
        return message
    return None


def run_pipeline(env: dict[str, str]) -> int:
    """`meltano run tap-linkedin-crm target-duckdb`, echoing the tap's progress lines."""
    cmd = [str(MELTANO), "run", "tap-linkedin-crm", "target-duckdb"]
    print(f"$ meltano --environment=sandbox run tap-linkedin-crm target-duckdb   (log: {LOG})")
    with LOG.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None  # noqa: S101 - Popen with PIPE
        for line in proc.stdout:
            log.write(line)
            if (message := progress_line(line)) is not None:
                print(f"  {message}")
            elif "Block run completed" in line or "[error" in line:
                print(f"  meltano: {line.split(']', 1)[-1].strip()}")
        return proc.wait()


def query(queries: dict[str, str]) -> dict[str, dict[str, t.Any]]:
    """Read-only SQL on the demo database with target-duckdb's own (pinned) duckdb."""
    proc = subprocess.run(
        [str(DUCKDB_PYTHON), str(QUERY_DUCKDB), str(DATABASE), json.dumps(queries)],
        capture_output=True,
        text=True,
        check=True,
    )
    return t.cast("dict[str, dict[str, t.Any]]", json.loads(proc.stdout))


def ms_to_iso(value: int | None) -> str:
    """Epoch milliseconds as a readable UTC time."""
    if value is None:
        return "-"
    stamp = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def cell(value: object, width: int) -> str:
    """One table cell: control characters made visible, long values cut."""
    text = "" if value is None else str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\x00", "\\0")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: list[str], rows: list[list[object]], widths: list[int]) -> str:
    """A plain-text table."""
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(cell(v, w).ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows
    )
    return "\n".join(("  " + line).rstrip() for line in lines)


def meltano_state(env: dict[str, str]) -> dict[str, t.Any]:
    """What Meltano stored for the demo's pipeline."""
    proc = subprocess.run(
        [str(MELTANO), "state", "get", STATE_ID],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return t.cast("dict[str, t.Any]", json.loads(proc.stdout or "{}"))


def report(env: dict[str, t.Any]) -> None:
    """Print streams and row counts, bookmarks, flagged records and activities per seat."""
    records = f"{SCHEMA}.{STREAMS[0]}"
    counts = " union all ".join(
        f"select '{s}', count(*) from {SCHEMA}.{s}" for s in STREAMS[1:] + ANALYTICS_STREAMS
    )
    landed = query(
        {
            "records": f"select crmInstanceId, count(*), count(distinct jobId) from {records} "
            "group by 1 order by 1",
            "counts": counts,
            "flagged": "select firstName, lastName, crmCompanyName, linkedInCompanyName, "
            "strftime(flaggedAt, '%Y-%m-%d %H:%M:%SZ') "
            f"from {records} where notAtCompany order by flaggedAt desc limit 5",
            "seats": SEAT_ACTIVITY_SQL,
            "span": f"select min(startAt), max(endAt) from {SCHEMA}.sales_analytics_exports",
        }
    )
    per_instance = landed["records"]["rows"]
    total = sum(row[1] for row in per_instance)
    print("\nStreams that landed in", DATABASE.relative_to(ROOT), f"(schema {SCHEMA}):")
    print(table(["stream", "rows"], [[STREAMS[0], total], *landed["counts"]["rows"]], [30, 6]))
    print(f"\n{STREAMS[0]} per CRM instance:")
    print(table(["CRM instance", "rows", "jobs"], per_instance, [68, 6, 4]))

    state = meltano_state(env).get("singer_state", {})
    bookmarks = state.get("bookmarks", {})
    partitions = bookmarks.get(STREAMS[0], {}).get("partitions", [])
    print(f"\nBookmarks (meltano state get {STATE_ID}):")
    print(
        table(
            ["CRM instance", "nextExportStartAt", "as UTC"],
            [
                [
                    p["context"]["crmInstanceId"],
                    p.get("nextExportStartAt"),
                    ms_to_iso(p.get("nextExportStartAt")),
                ]
                for p in partitions
            ],
            [68, 17, 24],
        )
    )
    print()
    print(
        table(
            ["contract", "export type", "endAt", "as UTC"],
            [
                [
                    p["context"]["contract"],
                    p["context"]["exportType"],
                    p.get("replication_key_value"),
                    ms_to_iso(p.get("replication_key_value")),
                ]
                for stream in ANALYTICS_ROWS
                for p in bookmarks.get(stream, {}).get("partitions", [])
            ],
            [24, 16, 13, 24],
        )
    )
    print("\nFive flagged records (notAtCompany = true, newest first):")
    print(
        table(
            ["first name", "last name", "CRM company", "LinkedIn company", "flaggedAt"],
            landed["flagged"]["rows"],
            [14, 16, 22, 22, 20],
        )
    )
    start, end = landed["span"]["rows"][0]
    print(
        f"\nSales Navigator activity per seat, {ms_to_iso(start)[:16]} to {ms_to_iso(end)[:16]} "
        "UTC (most active first):"
    )
    print(
        table(
            ["contract", "seat", "seat holder", "activities", "InMails", "views", "SSI"],
            landed["seats"]["rows"],
            [22, 10, 18, 10, 7, 5, 6],
        )
    )


#: Activities per seat, with the seat holder and SSI from the latest seat export. LinkedIn does not
#: publish the seat CSV's columns, so the tap keeps them all in the extraColumns JSON, as text
#: (`column_types` can type them: `sales_seats.<column>`).
SEAT_ACTIVITY_SQL = f"""
with seats as (
    select contract,
           json_extract_string(extracolumns, '$.seatId')::bigint as seatid,
           json_extract_string(extracolumns, '$.seatHolderName') as holder,
           json_extract_string(extracolumns, '$.socialSellingIndex')::double as ssi,
           row_number() over (partition by contract, seatid order by endat desc) as latest
    from {SCHEMA}.sales_seats
)
select a.contract, a.seatid, s.holder, count(*) as activities,
       count(*) filter (where a.activitytype = 'INMAIL_SENT') as inmails,
       count(*) filter (where a.activitytype = 'PROFILE_VIEWED') as views,
       s.ssi
from {SCHEMA}.sales_activities a
left join seats s on s.contract = a.contract and s.seatid = a.seatid and s.latest = 1
group by a.contract, a.seatid, s.holder, s.ssi
order by activities desc, a.contract, a.seatid
"""


def main() -> int:
    """Run the demo.

    Returns:
        The exit status: 0 when the pipeline ran, else Meltano's.
    """
    for path in (MELTANO, DUCKDB_PYTHON):
        if not path.exists():
            print(f"{path} is missing: run `make demo` (it installs Meltano and its plugins).")
            return 2
    OUTPUT.mkdir(exist_ok=True)
    DATABASE.unlink(missing_ok=True)
    started = time.monotonic()
    with Sandbox(load_scenario("demo"), port=0) as sb:
        print(f"LinkedIn sandbox listening on {sb.base_url} (scenario: demo)")
        env = meltano_env(sb)
        subprocess.run(
            [str(MELTANO), "state", "clear", "--force", STATE_ID],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        )
        status = run_pipeline(env)
        jobs, analytics_jobs = sb.jobs, sb.analytics_jobs
    print(
        f"Sandbox stopped; {len(jobs)} CRM and {len(analytics_jobs)} analytics export job(s) "
        "served."
    )
    if status != 0:
        print(f"meltano run failed (exit {status}); see {LOG}.")
        return status
    report(env)
    print(f"\nDone in {time.monotonic() - started:.1f} s. Next: `make test`; the data is in")
    print(f"{DATABASE.relative_to(ROOT)} (tables {SCHEMA}.<stream>, DuckDB 1.2.2 format).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
