"""Benchmark the whole pipeline, `tap-linkedin-crm | target`, on one sandbox export.

What one run of a pipeline is: the sandbox (`linkedin-crm-sandbox`, its own process) serves one
export of `--rows` rows (12 columns, ~230 bytes a row, plain CSV, NUL bytes and very long values
included); the tap Meltano installed (`.meltano/extractors/…`) runs with no state, so it creates a
new export job, and its stdout is piped into the target Meltano installed, configured with the
`config` (and `env`) of that loader in meltano.yml: the settings a user copies. Only paths and the
PostgreSQL connection are replaced.

Pipelines: the tap into /dev/null, with RECORD and with BATCH messages (the tap's memory with
either); into target-jsonl; into target-duckdb; into target-postgres with RECORD messages; into
target-postgres with BATCH messages, once per `--batch-encoding` (default jsonl files, gzip and
plain, of `--batch-size` records, the tap's `batch_config`; `parquet` needs pyarrow in the tap's
and the target's venvs). PostgreSQL is a throwaway server (tests/e2e/postgres_server.py) with its
default, durable settings; every run loads into a new, empty database.

The loaders run with meltano.yml's settings, the ones users copy; RECORD and BATCH get the same.
`--loader-setting KEY=JSON` overrides one setting of target-postgres for an investigation (the
JSON results record it, the table says so); `make bench-e2e` uses none.

What is measured, per run: wall time from starting the tap to the exit of the last process (so
process start-up, the export job's creation and polling, download, decoding, the pipe and the
load all count); records/s = rows / wall time; each process's peak RSS and CPU time from
`os.wait4`. The rows that landed are counted after each run (not for /dev/null) and must equal
`--rows`. Runs are interleaved (each round runs every pipeline once), so RECORD and BATCH into
PostgreSQL are measured side by side; the medians of `--runs` rounds are reported.

A child's `ru_maxrss` also counts the memory of the process that started it (Linux copies the
parent's high-water mark at exec), so this launcher keeps itself small (the sandbox is another
process) and reports its own peak RSS: no figure below it means anything.

Usage:
    .venv/bin/python scripts/bench_e2e.py [--rows 200000] [--runs 3] [--only NAME ...]
        [--batch-size 50000] [--batch-encoding jsonl-gzip jsonl-none parquet]
        [--loader-setting use_copy=false]

Results: a table on stdout and JSON in bench-results/bench-e2e.json (or `--out`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # PyYAML: a dependency of singer-sdk

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / ".meltano"
TAP = PLUGINS / "extractors" / "tap-linkedin-crm" / "venv" / "bin" / "tap-linkedin-crm"
SANDBOX = ROOT / ".venv" / "bin" / "linkedin-crm-sandbox"
QUERY_DUCKDB = ROOT / "scripts" / "query_duckdb.py"
RECORDS_STREAM = "crm_data_validation_records"
SCHEMA = "linkedin_crm"
INSTANCE = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
#: `--batch-encoding` values: the tap's `batch_config.encoding`.
BATCH_ENCODINGS = {
    "jsonl-gzip": {"format": "jsonl", "compression": "gzip"},
    "jsonl-none": {"format": "jsonl", "compression": "none"},
    "parquet": {"format": "parquet", "compression": "none"},
}
RECORD_PIPELINE = "tap | target-postgres RECORD"
SANDBOX_START_TIMEOUT = 60.0


def loader_venv(name: str) -> Path:
    """The venv Meltano installed a loader into."""
    return PLUGINS / "loaders" / name / "venv"


@dataclass(frozen=True)
class Pipeline:
    """One pipeline: the tap into a loader of meltano.yml (None: /dev/null)."""

    name: str
    loader: str | None
    #: The BATCH encoding (a `BATCH_ENCODINGS` key), or None for RECORD messages.
    batch: str | None = None


def pipelines(encodings: list[str]) -> list[Pipeline]:
    """Every pipeline, with one BATCH pipeline into PostgreSQL per encoding."""
    return [
        Pipeline("tap > /dev/null", None),
        Pipeline(f"tap BATCH {encodings[0]} > /dev/null", None, batch=encodings[0]),
        Pipeline("tap | target-jsonl", "target-jsonl"),
        Pipeline("tap | target-duckdb", "target-duckdb"),
        Pipeline(RECORD_PIPELINE, "target-postgres"),
        *(
            Pipeline(f"tap | target-postgres BATCH {e}", "target-postgres", batch=e)
            for e in encodings
        ),
    ]


@dataclass
class ProcessStats:
    """What `os.wait4` reported for one process."""

    exit_code: int
    peak_rss_mib: float
    cpu_s: float


@dataclass
class RunResult:
    """One run of one pipeline."""

    wall_s: float
    rows_landed: int | None
    processes: dict[str, ProcessStats] = field(default_factory=dict)


# -- helpers ---------------------------------------------------------------------------------


def load_postgres_server() -> ModuleType:
    """The throwaway-server module the end-to-end tests use (not a package: loaded by path)."""
    path = ROOT / "tests" / "e2e" / "postgres_server.py"
    spec = importlib.util.spec_from_file_location("postgres_server", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path}"
        raise SystemExit(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules["postgres_server"] = module
    spec.loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without plugin, Meltano or libpq settings a developer may have exported."""
    prefixes = ("TAP_LINKEDIN_CRM_", "TARGET_", "MELTANO_", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


def loader_settings(name: str) -> tuple[dict[str, t.Any], dict[str, str]]:
    """The `config` and `env` of a loader in meltano.yml."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    for plugin in project["plugins"]["loaders"]:
        if plugin["name"] == name:
            env = {k: str(v) for k, v in (plugin.get("env") or {}).items()}
            return dict(plugin.get("config") or {}), env
    msg = f"no loader {name} in meltano.yml"
    raise SystemExit(msg)


def tap_capabilities() -> set[str]:
    """What the installed tap advertises in `--about` (BATCH needs `batch`)."""
    proc = subprocess.run(
        [str(TAP), "--about", "--format=json"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    )
    return set(json.loads(proc.stdout)["capabilities"])


def venv_versions(venv: Path, distributions: list[str]) -> dict[str, str | None]:
    """Installed versions of `distributions` in a plugin venv."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(d):\n"
        "    try:\n"
        "        return m.version(d)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({d: v(d) for d in sys.argv[1:]}))\n"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *distributions],
        capture_output=True,
        text=True,
        check=True,
    )
    return t.cast("dict[str, str | None]", json.loads(proc.stdout))


def machine() -> dict[str, t.Any]:
    """CPU model, cores, RAM, OS, Python, and how busy the machine was at the start."""
    cpu_model = None
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class SandboxProcess:
    """`linkedin-crm-sandbox` serving one instance of `rows` rows, on a free port."""

    def __init__(self, rows: int, work: Path) -> None:
        """Write the scenario; `with` starts the sandbox and gives its tap config."""
        self.work = work
        self.scenario_path = work / "scenario.json"
        self.config_path = work / "sandbox-tap-config.json"
        scenario = {
            "instances": {INSTANCE: {"rows": rows, "files": 1, "gzip": False}},
            "job_processing_polls": 1,
        }
        self.scenario_path.write_text(json.dumps(scenario), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> dict[str, t.Any]:
        """Start the sandbox; return the tap config it wrote."""
        log = (self.work / "sandbox.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [
                    str(SANDBOX),
                    "--scenario",
                    str(self.scenario_path),
                    "--port",
                    "0",
                    "--config-out",
                    str(self.config_path),
                    "--quiet",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )
        deadline = time.monotonic() + SANDBOX_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"the sandbox exited: {(self.work / 'sandbox.log').read_text()[-2000:]}"
                raise SystemExit(msg)
            try:
                return t.cast("dict[str, t.Any]", json.loads(self.config_path.read_text()))
            except (OSError, ValueError):
                time.sleep(0.1)
        msg = "the sandbox did not write its tap config in time"
        raise SystemExit(msg)

    def __exit__(self, *_exc: object) -> None:
        """Stop the sandbox."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- one run -----------------------------------------------------------------------------------


def run_processes(
    tap_cmd: list[str],
    target_cmd: list[str] | None,
    target_env: dict[str, str],
    run_dir: Path,
    timeout: float,
) -> tuple[float, dict[str, ProcessStats]]:
    """Run `tap | target` (or `tap > /dev/null`); return the wall time and each process's stats."""
    with (
        (run_dir / "tap.stderr").open("wb") as tap_err,
        (run_dir / "target.stderr").open("wb") as target_err,
    ):
        start = time.perf_counter()
        tap = subprocess.Popen(
            tap_cmd,
            stdout=subprocess.PIPE if target_cmd else subprocess.DEVNULL,
            stderr=tap_err,
            env=clean_env(),
        )
        children = {"tap": tap}
        if target_cmd:
            children["target"] = subprocess.Popen(
                target_cmd,
                stdin=tap.stdout,
                stdout=subprocess.DEVNULL,
                stderr=target_err,
                env=target_env,
            )
            assert tap.stdout is not None  # noqa: S101
            tap.stdout.close()

        def kill_all() -> None:
            for proc in children.values():
                proc.kill()

        watchdog = threading.Timer(timeout, kill_all)
        watchdog.start()
        stats: dict[str, ProcessStats] = {}
        try:
            for role, proc in children.items():
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                stats[role] = ProcessStats(
                    exit_code=proc.returncode,
                    peak_rss_mib=usage.ru_maxrss / 1024,
                    cpu_s=usage.ru_utime + usage.ru_stime,
                )
            wall = time.perf_counter() - start
        finally:
            watchdog.cancel()
    for role, stat in stats.items():
        if stat.exit_code != 0:
            log = (run_dir / f"{role}.stderr").read_text(errors="replace")[-4000:]
            msg = f"{role} exited with {stat.exit_code} (timeout {timeout:.0f} s?):\n{log}"
            raise SystemExit(msg)
    return wall, stats


def count_jsonl(directory: Path) -> int:
    """Records target-jsonl wrote."""
    with (directory / f"{RECORDS_STREAM}.jsonl").open("rb") as fh:
        return sum(1 for _ in fh)


def count_duckdb(path: Path) -> int:
    """Records target-duckdb loaded (read with its own duckdb)."""
    query = {"n": f"select count(*) from {SCHEMA}.{RECORDS_STREAM}"}  # noqa: S608 - constants
    proc = subprocess.run(
        [
            str(loader_venv("target-duckdb") / "bin" / "python"),
            str(QUERY_DUCKDB),
            str(path),
            json.dumps(query),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(proc.stdout)["n"]["rows"][0][0])


@dataclass
class Bench:
    """Everything the runs share."""

    args: argparse.Namespace
    work: Path
    tap_config: dict[str, t.Any]
    postgres: t.Any  # postgres_server.PostgresServer
    overrides: dict[str, t.Any] = field(default_factory=dict)
    counter: int = 0

    def tap_command(self, pipeline: Pipeline, run_dir: Path) -> list[str]:
        """The tap's command line, with its config (and batch_config) written to `run_dir`."""
        tap_config = dict(self.tap_config)
        if pipeline.batch:
            batches = run_dir / "batches"
            batches.mkdir()
            tap_config["batch_config"] = {
                "encoding": BATCH_ENCODINGS[pipeline.batch],
                "storage": {"root": f"file://{batches}", "prefix": "bench-"},
                "batch_size": self.args.batch_size,
            }
        (run_dir / "tap.json").write_text(json.dumps(tap_config), encoding="utf-8")
        return [str(TAP), "--config", str(run_dir / "tap.json")]

    def run(self, pipeline: Pipeline) -> RunResult:
        """One run of a pipeline, in a fresh directory (and database); checks what landed."""
        self.counter += 1
        run_dir = self.work / f"run-{self.counter:03d}"
        run_dir.mkdir()
        tap_cmd = self.tap_command(pipeline, run_dir)
        if pipeline.loader is None:
            try:
                wall, stats = run_processes(tap_cmd, None, {}, run_dir, self.args.timeout)
            finally:
                shutil.rmtree(run_dir / "batches", ignore_errors=True)
            return RunResult(wall, None, stats)

        config, env = loader_settings(pipeline.loader)
        if pipeline.loader == "target-postgres":
            config.update(self.overrides)
        database = None
        if pipeline.loader == "target-jsonl":
            config["destination_path"] = str(run_dir / "jsonl")
        elif pipeline.loader == "target-duckdb":
            config["filepath"] = str(run_dir / "warehouse.duckdb")
        elif pipeline.loader == "target-postgres":
            database = f"bench_{self.counter:03d}"
            config.update(self.postgres.create_database(database).target_config())
        (run_dir / "target.json").write_text(json.dumps(config), encoding="utf-8")
        target_cmd = [
            str(loader_venv(pipeline.loader) / "bin" / pipeline.loader),
            "--config",
            str(run_dir / "target.json"),
        ]
        try:
            wall, stats = run_processes(
                tap_cmd, target_cmd, clean_env(**env), run_dir, self.args.timeout
            )
            if pipeline.loader == "target-jsonl":
                landed = count_jsonl(run_dir / "jsonl")
            elif pipeline.loader == "target-duckdb":
                landed = count_duckdb(run_dir / "warehouse.duckdb")
            else:
                db = self.postgres.database(database)
                count = f"select count(*) from {SCHEMA}.{RECORDS_STREAM}"  # noqa: S608 - constants
                landed = int(db.scalar(count))
        finally:
            if database is not None:
                self.postgres.drop_database(database)
            shutil.rmtree(run_dir / "batches", ignore_errors=True)
            (run_dir / "warehouse.duckdb").unlink(missing_ok=True)
            shutil.rmtree(run_dir / "jsonl", ignore_errors=True)
        if landed != self.args.rows:
            msg = f"{pipeline.name}: {landed} rows landed, expected {self.args.rows}"
            raise SystemExit(msg)
        return RunResult(wall, landed, stats)


# -- summary ---------------------------------------------------------------------------------


def summarize(pipeline: Pipeline, runs: list[RunResult], rows: int) -> dict[str, t.Any]:
    """Medians of the runs of one pipeline, and every run."""
    wall = statistics.median(r.wall_s for r in runs)
    processes = {
        role: {
            "peak_rss_mib": round(
                statistics.median(r.processes[role].peak_rss_mib for r in runs), 1
            ),
            "cpu_s": round(statistics.median(r.processes[role].cpu_s for r in runs), 2),
        }
        for role in runs[0].processes
    }
    return {
        "pipeline": pipeline.name,
        "loader": pipeline.loader,
        "messages": "BATCH" if pipeline.batch else "RECORD",
        "batch_encoding": pipeline.batch,
        "status": "ok",
        "wall_s": round(wall, 2),
        "records_per_s": round(rows / wall),
        "processes": processes,
        "runs": [
            {
                "wall_s": round(r.wall_s, 2),
                "records_per_s": round(rows / r.wall_s),
                "rows_landed": r.rows_landed,
                "processes": {
                    role: {"peak_rss_mib": round(s.peak_rss_mib, 1), "cpu_s": round(s.cpu_s, 2)}
                    for role, s in r.processes.items()
                },
            }
            for r in runs
        ],
    }


def print_table(results: dict[str, t.Any]) -> None:
    """The medians, one line per pipeline."""
    print(
        f"\n{results['rows']:,} rows, median of {results['runs']} run(s); "
        "wall = tap start -> last process exit"
    )
    header = (
        f"{'pipeline':40s} {'wall s':>8s} {'records/s':>10s} {'tap MiB':>8s} {'target MiB':>10s}"
    )
    print(header)
    print("-" * len(header))
    for row in results["pipelines"]:
        tap = row["processes"]["tap"]["peak_rss_mib"]
        target = row["processes"].get("target", {}).get("peak_rss_mib")
        target_text = f"{target:10.1f}" if target is not None else f"{'-':>10s}"
        print(
            f"{row['pipeline']:40s} {row['wall_s']:8.2f} {row['records_per_s']:10,d} "
            f"{tap:8.1f} {target_text}"
        )
    if results["loader_overrides"]:
        print(f"loader settings overridden (not meltano.yml's): {results['loader_overrides']}")
    speedups = results["postgres_batch_speedups"]
    if not speedups:
        print("BATCH vs RECORD into PostgreSQL: not measured (needs both pipelines)")
    for name, speedup in speedups.items():
        print(
            f"{name} vs RECORD: {speedup:.2f}x (goal >= {results['postgres_batch_goal']}x: "
            f"{'met' if speedup >= results['postgres_batch_goal'] else 'NOT met'})"
        )
    print(f"launcher peak RSS (a floor for every figure above): {results['launcher_rss_mib']} MiB")


def selected(names: list[str] | None, encodings: list[str]) -> Iterator[Pipeline]:
    """The pipelines `--only` names (all by default)."""
    for pipeline in pipelines(encodings):
        if not names or any(n.lower() in pipeline.name.lower() for n in names):
            yield pipeline


def check_batch_ready(active: list[Pipeline]) -> None:
    """The installed tap emits BATCH, and pyarrow is where parquet needs it."""
    if any(p.batch for p in active) and "batch" not in tap_capabilities():
        msg = "the installed tap does not advertise the `batch` capability (--about)"
        raise SystemExit(msg)
    if any(p.batch == "parquet" for p in active):
        for venv in (TAP.parent.parent, loader_venv("target-postgres")):
            if venv_versions(venv, ["pyarrow"])["pyarrow"] is None:
                msg = f"parquet BATCH files need pyarrow in {venv}"
                raise SystemExit(msg)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the export")
    parser.add_argument("--runs", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument(
        "--batch-size", type=int, default=10_000, help="records per BATCH file (the tap's default)"
    )
    parser.add_argument(
        "--batch-encoding",
        nargs="+",
        choices=list(BATCH_ENCODINGS),
        default=["jsonl-gzip", "jsonl-none"],
        help="one BATCH pipeline into PostgreSQL per encoding (the first one is the headline)",
    )
    parser.add_argument(
        "--loader-setting",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a target-postgres setting (investigations only; recorded in the results)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument(
        "--only", nargs="*", help="run only pipelines whose name contains one of these"
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench-e2e.json"))
    return parser.parse_args()


def main() -> None:
    """Parse the arguments, run every pipeline `--runs` times, print the table, write the JSON."""
    args = parse_args()

    for path in (TAP, SANDBOX):
        if not path.is_file():
            msg = f"{path} is missing: run `make meltano` (or `make bench-e2e`)"
            raise SystemExit(msg)
    pg = load_postgres_server()
    active = list(selected(args.only, args.batch_encoding))
    check_batch_ready(active)
    overrides = {}
    for item in args.loader_setting:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)

    postgres_config, postgres_env = loader_settings("target-postgres")
    results: dict[str, t.Any] = {
        "benchmark": "bench-e2e",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "runs": args.runs,
        "timed": "wall time from starting the tap to the exit of the last process of the pipeline",
        "machine": machine(),
        "versions": {
            "tap": venv_versions(TAP.parent.parent, ["tap-linkedin-crm", "singer-sdk"]),
            "target-jsonl": venv_versions(loader_venv("target-jsonl"), ["target-jsonl"]),
            "target-duckdb": venv_versions(
                loader_venv("target-duckdb"), ["target-duckdb", "duckdb"]
            ),
            "target-postgres": venv_versions(
                loader_venv("target-postgres"),
                ["meltanolabs-target-postgres", "singer-sdk", "psycopg", "sqlalchemy"],
            ),
        },
        "settings": {
            "target-postgres": {"config": postgres_config, "env": postgres_env},
            "batch_config": {
                "encodings": {e: BATCH_ENCODINGS[e] for e in args.batch_encoding},
                "batch_size": args.batch_size,
            },
            "postgres_server": "default settings (durable: fsync on), loopback TCP, SCRAM",
        },
    }
    runs: dict[str, list[RunResult]] = {p.name: [] for p in active}
    with (
        tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp,
        pg.PostgresServer() as postgres,
    ):
        work = Path(tmp)
        results["versions"]["postgresql"] = postgres.version()
        with SandboxProcess(args.rows, work) as tap_config:
            bench = Bench(args, work, tap_config, postgres, overrides)
            for round_index in range(args.runs):
                for pipeline in active:
                    result = bench.run(pipeline)
                    runs[pipeline.name].append(result)
                    rss = ", ".join(
                        f"{role} {s.peak_rss_mib:.0f} MiB" for role, s in result.processes.items()
                    )
                    print(
                        f"round {round_index + 1}: {pipeline.name}: {result.wall_s:.2f} s, "
                        f"{args.rows / result.wall_s:,.0f} records/s, {rss}",
                        file=sys.stderr,
                    )

    summary = [summarize(p, runs[p.name], args.rows) for p in active]
    results["pipelines"] = summary
    results["loader_overrides"] = overrides
    record = next((row for row in summary if row["pipeline"] == RECORD_PIPELINE), None)
    speedups = {
        row["pipeline"]: round(record["wall_s"] / row["wall_s"], 2)
        for row in summary
        if record and row["loader"] == "target-postgres" and row["batch_encoding"]
    }
    results["postgres_batch_speedups"] = speedups
    # The figure: the default (first) encoding, medians measured side by side.
    first = f"tap | target-postgres BATCH {args.batch_encoding[0]}"
    results["postgres_batch_speedup"] = speedups.get(first)
    results["postgres_batch_goal"] = 4
    results["postgres_batch_goal_met"] = (
        speedups[first] >= results["postgres_batch_goal"] if first in speedups else None
    )
    results["launcher_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
