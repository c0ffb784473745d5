"""Benchmark the real tap process against raw-Python baselines over the same CSV export.

What one run does, on this machine:

1. Starts the LinkedIn sandbox in-process (a background thread) serving one export of `--rows` rows
   (12 columns, ~230 bytes a row, plain CSV, one file per instance).
2. Runs the real `tap-linkedin-crm` process in each configuration (`--configs`): `identity` (no
   stream maps), `md5` (`"email": "md5(email) if email else None"`), `deselect2` (email and title
   deselected in the catalog) and `flatten1` (`flattening_enabled`, depth 1), with its stdout
   through a pipe into a consumer process that counts lines.
3. Downloads the same CSV once to a temporary file and runs two baselines over it, also piped into
   the consumer: `csv.reader` + `json.dumps` and `csv.reader` + `orjson.dumps`, each writing
   RECORD-shaped lines (`{"type":"RECORD","stream":...,"record":{...},"time_extracted":...}`).

What is timed: for the tap, from the moment the sandbox marked the export job COMPLETED (its
`completedAt`) to the moment the consumer received the last RECORD of the records stream; so the
job wait, process start-up and SDK discovery are excluded, and download, decoding, typing, encoding
and the pipe are included. For a baseline, from its process start to its last line. Peak RSS is the
child's VmHWM from /proc, polled every 20 ms.

Runs are interleaved (each round runs every configuration and baseline once), so a busy moment on
the machine hits all of them alike; the median of the rounds is reported, with each
configuration's ratio to the `csv+json` baseline.

Usage:
    .venv/bin/python scripts/bench.py [--rows N] [--runs 3] [--configs identity,md5]
        [--skip-baselines]
    .venv/bin/python scripts/bench.py --instances 4 --processing-seconds 5 --rows 20000

Results: a table on stdout and JSON in bench-results/bench.json (or `--out`).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from pathlib import Path

from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, InstanceSpec, Sandbox, Scenario
from tap_linkedin_crm.tap import TapLinkedInCRM

ROOT = Path(__file__).resolve().parent.parent
RECORDS_STREAM = "crm_data_validation_records"
RECORDS_MARK = b'"stream":"' + RECORDS_STREAM.encode() + b'"'
BIN = Path(sys.executable).parent
#: Tap settings (and catalog changes) of each benchmarked configuration.
CONFIGS: dict[str, dict[str, t.Any]] = {
    "identity": {},
    "md5": {"stream_maps": {RECORDS_STREAM: {"email": "md5(email) if email else None"}}},
    "deselect2": {"deselect": ["email", "title"]},
    "flatten1": {"flattening_enabled": True, "flattening_max_depth": 1},
}

# The consumer: count lines; note when the last chunk holding a records-stream line arrived.
CONSUMER = f"""
import sys, time
read = sys.stdin.buffer.read1
lines = 0
last = 0.0
first = 0.0
mark = {RECORDS_MARK!r}
while chunk := read(1 << 18):
    lines += chunk.count(b"\\n")
    if mark in chunk[-8192:] or mark in chunk[:8192]:
        last = time.time()
        if not first:
            first = last
print(lines, first, last)
"""


def _baseline(kind: str, path: str) -> None:
    """Child mode: csv.reader + json/orjson writing RECORD-shaped lines to stdout."""
    stamp = dt.datetime.now(dt.UTC).isoformat()
    out = sys.stdout.buffer
    with Path(path).open("rb") as file:
        text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
        rows = csv.reader(text)
        header = next(rows)
        if kind == "json":
            dumps = json.dumps
            write_text = sys.stdout.write
            for row in rows:
                write_text(
                    dumps(
                        {
                            "type": "RECORD",
                            "stream": RECORDS_STREAM,
                            "record": dict(zip(header, row, strict=True)),
                            "time_extracted": stamp,
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
        else:
            import orjson  # noqa: PLC0415 - only the orjson child needs it

            odumps = orjson.dumps
            for row in rows:
                out.write(
                    odumps(
                        {
                            "type": "RECORD",
                            "stream": RECORDS_STREAM,
                            "record": dict(zip(header, row, strict=True)),
                            "time_extracted": stamp,
                        },
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                )
    sys.stdout.flush()


def _run_piped(cmd: list[str], stderr_path: Path) -> tuple[float, float, int, float, float, float]:
    """Run `cmd | consumer`; return (start, end, lines, first_mark, last_mark, peak RSS MiB)."""
    with stderr_path.open("wb") as err:
        start = time.time()
        producer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        consumer = subprocess.Popen(
            [sys.executable, "-c", CONSUMER], stdin=producer.stdout, stdout=subprocess.PIPE
        )
        assert producer.stdout is not None  # noqa: S101
        producer.stdout.close()
        hwm_kib = 0
        status_path = Path(f"/proc/{producer.pid}/status")
        while producer.poll() is None:
            hwm_kib = max(hwm_kib, _vm_hwm_kib(status_path))
            time.sleep(0.02)
        out, _ = consumer.communicate()
        end = time.time()
    if producer.returncode != 0:
        sys.stderr.write(stderr_path.read_text(errors="replace")[-4000:])
        msg = f"{cmd[0]} exited with {producer.returncode}"
        raise SystemExit(msg)
    lines, first, last = out.split()
    rss_mib = hwm_kib / 1024
    return start, end, int(lines), float(first), float(last) or end, rss_mib


def _vm_hwm_kib(status_path: Path) -> int:
    """The process's peak RSS so far (VmHWM, KiB); 0 once it has exited.

    Polled rather than taken from `os.wait4`'s `ru_maxrss`: that one also counts the memory the
    child shared with this (larger) process between fork and exec.
    """
    try:
        text = status_path.read_text(encoding="ascii")
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _scenario(rows: int, instances: int, processing_seconds: float | None) -> Scenario:
    urns = [DYNAMICS_INSTANCE] + [
        f"urn:li:crmInstance:(SFDC,00D5e0000{i:06d}AAA)" for i in range(1, instances)
    ]
    return Scenario(
        instances={urn: InstanceSpec(rows=rows, files=1, gzip=False) for urn in urns},
        processing_seconds=processing_seconds,
        job_processing_polls=1,
    )


def _tap_run(rows: int, work: Path, args: argparse.Namespace, name: str) -> dict[str, t.Any]:
    """One sandbox + one tap run in configuration `name`; returns its measurements."""
    scenario = _scenario(rows, args.instances, args.processing_seconds)
    settings = dict(CONFIGS[name])
    deselect = settings.pop("deselect", [])
    with Sandbox(scenario) as sandbox:
        config = sandbox.tap_config(
            job_timeout=max(60, 10 * (args.processing_seconds or 0)), **settings
        )
        config_path = work / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        command = [str(BIN / "tap-linkedin-crm"), "--config", str(config_path)]
        if deselect:
            catalog = TapLinkedInCRM(config=config).catalog_dict
            for stream in catalog["streams"]:
                for entry in stream["metadata"]:
                    if entry["breadcrumb"][-1:] and entry["breadcrumb"][-1] in deselect:
                        entry["metadata"]["selected"] = False
            catalog_path = work / "catalog.json"
            catalog_path.write_text(json.dumps(catalog), encoding="utf-8")
            command += ["--catalog", str(catalog_path)]
        start, end, lines, first, last, rss = _run_piped(command, work / f"tap-{name}.stderr")
        jobs = list(sandbox.jobs.values())
        completed = max(job["completedAt"] or 0 for job in jobs) / 1000
        created = min(job["createdAt"] for job in jobs) / 1000
        csv_path = work / "export.csv"
        if not csv_path.exists() and not args.skip_baselines:
            url = jobs[0]["downloadUrls"][0]
            with urllib.request.urlopen(url) as response, csv_path.open("wb") as target:  # noqa: S310 - loopback sandbox
                shutil.copyfileobj(response, target, 1 << 20)
    total_rows = rows * args.instances
    timed = last - completed
    return {
        "rows": total_rows,
        "lines": lines,
        "timed_seconds": timed,
        "records_per_s": total_rows / timed,
        "wall_seconds": end - start,
        "job_created_to_last_record_s": last - created,
        "first_to_last_record_s": last - first,
        "peak_rss_mib": rss,
    }


def _baseline_run(kind: str, csv_path: Path, rows: int, work: Path) -> dict[str, t.Any]:
    start, _end, lines, _first, last, rss = _run_piped(
        [sys.executable, __file__, "--baseline-child", kind, str(csv_path)],
        work / f"{kind}.stderr",
    )
    if lines != rows:
        msg = f"baseline {kind}: {lines} lines, expected {rows}"
        raise SystemExit(msg)
    return {
        "rows": rows,
        "timed_seconds": last - start,
        "records_per_s": rows / (last - start),
        "peak_rss_mib": rss,
    }


def _median(runs: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    ordered = sorted(runs, key=lambda r: r["records_per_s"])
    result = dict(ordered[len(ordered) // 2])
    result["runs_records_per_s"] = [round(r["records_per_s"]) for r in runs]
    result["median_records_per_s"] = statistics.median(r["records_per_s"] for r in runs)
    return result


def main() -> None:
    """Parse the arguments, run everything, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per instance")
    parser.add_argument("--runs", type=int, default=1, help="runs of each; the median is shown")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--processing-seconds", type=float, default=None)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}"
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    parser.add_argument("--baseline-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        _baseline(*args.baseline_child)
        return

    results: dict[str, t.Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rows_per_instance": args.rows,
        "instances": args.instances,
        "processing_seconds": args.processing_seconds,
        "timed": "tap: job completedAt -> last records-stream line at the consumer; "
        "baselines: process start -> last line",
    }
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    results["configs"] = {name: CONFIGS[name] for name in names}
    with tempfile.TemporaryDirectory(prefix="tap-bench-") as tmp:
        work = Path(tmp)
        runs: dict[str, list[dict[str, t.Any]]] = {name: [] for name in names}
        baseline_runs: dict[str, list[dict[str, t.Any]]] = {"json": [], "orjson": []}
        for i in range(args.runs):
            for name in names:
                runs[name].append(_tap_run(args.rows, work, args, name))
                run = runs[name][-1]
                print(
                    f"round {i + 1} {name}: {run['records_per_s']:,.0f} records/s, "
                    f"{run['peak_rss_mib']:.1f} MiB, wall {run['wall_seconds']:.2f} s, "
                    f"job created -> last record {run['job_created_to_last_record_s']:.2f} s",
                    file=sys.stderr,
                )
            if not args.skip_baselines:
                csv_path = work / "export.csv"
                for kind, kind_runs in baseline_runs.items():
                    kind_runs.append(_baseline_run(kind, csv_path, args.rows, work))
        results["tap"] = {name: _median(runs[name]) for name in names}
        for kind, kind_runs in baseline_runs.items():
            if kind_runs:
                results[f"csv+{kind}"] = _median(kind_runs)
    _print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {out}")


def _print_table(results: dict[str, t.Any]) -> None:
    taps = results["tap"]
    rounds = len(next(iter(taps.values()))["runs_records_per_s"])
    print(
        f"\n{results['instances']} instance(s) x {results['rows_per_instance']:,} rows, "
        f"median of {rounds} round(s); timed: {results['timed']}"
    )
    baseline = results.get("csv+json")
    print(f"{'':16s} {'records/s':>12s} {'peak RSS MiB':>13s} {'x csv+json':>11s}")
    rows = [(f"tap {name}", row) for name, row in taps.items()]
    rows += [(name, results[name]) for name in ("csv+json", "csv+orjson") if name in results]
    for name, row in rows:
        ratio = row["records_per_s"] / baseline["records_per_s"] if baseline else float("nan")
        row["ratio_to_csv_json"] = ratio
        print(f"{name:16s} {row['records_per_s']:12,.0f} {row['peak_rss_mib']:13.1f} {ratio:11.2f}")
    if results["processing_seconds"]:
        first = next(iter(taps.values()))
        print(
            f"{results['instances']} instances, jobs of {results['processing_seconds']} s each: "
            f"first job created -> last record {first['job_created_to_last_record_s']:.2f} s "
            f"(process wall {first['wall_seconds']:.2f} s)"
        )


if __name__ == "__main__":
    main()
