"""A throwaway PostgreSQL server: its own cluster in a temporary directory, on loopback only.

Used by the end-to-end tests (the `postgres` fixture) and by `scripts/bench_e2e.py`. It needs only
the server binaries (`initdb`, `pg_ctl`, `postgres`, and `psql` from the client package the server
depends on); `make postgres-server` installs Debian's when they are missing. Nothing touches a
system cluster: the data directory, the Unix socket and the log live in one temporary directory,
removed by `stop()`.

PostgreSQL refuses to run as root, so when this process is root the cluster belongs to the
`postgres` system user (or `nobody`), and the server runs as that user.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

#: Where Debian and Ubuntu put each major version's server binaries.
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = "make postgres-server  (as root; or: apt-get install -y postgresql)"
SUPERUSER = "postgres"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
#: Settings for a disposable cluster: nothing survives the run, so durability is only cost.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresNotInstalledError(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_bindir() -> Path:
    """The directory of the newest installed server binaries.

    `POSTGRES_BINDIR` wins; then the newest `/usr/lib/postgresql/<major>/bin` holding them all;
    then the directory of `initdb` on PATH (other distributions, Homebrew).

    Raises:
        PostgresNotInstalledError: If no directory holds `initdb`, `pg_ctl` and `postgres`.
    """
    candidates: list[Path] = []
    if override := os.environ.get("POSTGRES_BINDIR"):
        candidates.append(Path(override))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p / "bin" for p in debian.iterdir() if p.name.replace(".", "").isdigit()]
        candidates.extend(sorted(versions, key=lambda p: float(p.parent.name), reverse=True))
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in SERVER_BINARIES):
            return bindir
    msg = (
        f"PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) not found; run: {INSTALL_HINT}"
    )
    raise PostgresNotInstalledError(msg)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server retries if another process takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier; only plain lower-case names are accepted.

    Raises:
        ValueError: If `name` is not a plain identifier.
    """
    if not _IDENTIFIER.match(name):
        msg = f"not a plain SQL identifier: {name!r}"
        raise ValueError(msg)
    return f'"{name}"'


@dataclass(frozen=True, slots=True)
class PostgresDatabase:
    """How a client reaches one database of the server: over TCP, with a password."""

    host: str
    port: int
    user: str
    password: str
    database: str
    psql: Path

    def target_config(self) -> dict[str, t.Any]:
        """Connection settings in target-postgres' config keys."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }

    def meltano_env(self) -> dict[str, str]:
        """The same, as the environment variables Meltano maps to target-postgres' settings."""
        return {f"TARGET_POSTGRES_{k.upper()}": str(v) for k, v in self.target_config().items()}

    def libpq_env(self) -> dict[str, str]:
        """The process environment for a libpq client (psql), without the caller's PG* settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGPASSWORD=self.password,
            PGDATABASE=self.database,
            PGCONNECT_TIMEOUT="10",
        )
        return env

    def execute(self, sql: str) -> str:
        """Run SQL statements with psql; return what psql printed.

        Raises:
            RuntimeError: If psql fails (the SQL's error included).
        """
        proc = subprocess.run(
            [str(self.psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env=self.libpq_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            msg = f"psql failed ({proc.returncode}): {proc.stderr.strip()}\nSQL: {sql}"
            raise RuntimeError(msg)
        return proc.stdout

    def query(self, sql: str) -> list[dict[str, t.Any]]:
        """Rows of one SELECT, as JSON objects (PostgreSQL's own `json_agg` of the rows)."""
        wrapped = f"select coalesce(json_agg(q), '[]'::json) from ({sql}) as q"  # noqa: S608
        out = self.execute(wrapped)
        return t.cast("list[dict[str, t.Any]]", json.loads(out))

    def scalar(self, sql: str) -> t.Any:
        """The single value of a one-row, one-column SELECT."""
        rows = self.query(sql)
        if len(rows) != 1 or len(rows[0]) != 1:
            msg = f"expected one row with one column, got {rows!r}"
            raise RuntimeError(msg)
        return next(iter(rows[0].values()))


class PostgresServer:
    """One PostgreSQL cluster, started by `start()` and removed, files and all, by `stop()`.

    Clients connect over TCP on 127.0.0.1 with a password (SCRAM); the superuser connects only
    over the Unix socket in the cluster's directory, which only its owner can reach.
    """

    def __init__(
        self,
        *,
        user: str = "loader",
        settings: Mapping[str, str] | None = None,
        bindir: Path | None = None,
    ) -> None:
        """Prepare (start() starts it).

        Args:
            user: Login role created for clients, with a random password.
            settings: Extra server settings (`-c name=value`), e.g. `FAST_SETTINGS`.
            bindir: Server binaries; default `find_bindir()`.
        """
        self.bindir = bindir or find_bindir()
        self.user = quote_identifier(user).strip('"')
        self.password = secrets.token_urlsafe(18)
        self.settings = dict(settings or {})
        self.port = 0
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = _server_owner()

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> t.Self:
        """Create the cluster, start the server and create the login role.

        Raises:
            RuntimeError: If initdb or the server fails (with the end of its log).
        """
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="linkedin-crm-pg-"))
            if self._owner is not None:
                os.chown(self.directory, self._owner.pw_uid, self._owner.pw_gid)
            self._initdb()
            self._spawn_on_a_free_port()
            self._superuser_sql(
                f"create role {quote_identifier(self.user)} login createdb "
                f"password '{self.password}'"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown, then kill) and remove its directory. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: roll back, close, exit
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> t.Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop it and remove its files."""
        self.stop()

    # -- databases ---------------------------------------------------------------------------

    def create_database(self, name: str) -> PostgresDatabase:
        """A new, empty database owned by the login role."""
        self._superuser_sql(
            f"create database {quote_identifier(name)} owner {quote_identifier(self.user)}"
        )
        return self.database(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected."""
        self._superuser_sql(f"drop database if exists {quote_identifier(name)} with (force)")

    def database(self, name: str) -> PostgresDatabase:
        """Connection settings for an existing database, as the login role."""
        return PostgresDatabase(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            database=name,
            psql=self._psql(),
        )

    def version(self) -> str:
        """The server's version string (`select version()`)."""
        return self._superuser_sql("select version()").strip()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for error messages."""
        if self.directory is None:
            return ""
        try:
            return (self.directory / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- internals ---------------------------------------------------------------------------

    @property
    def _data(self) -> Path:
        assert self.directory is not None
        return self.directory / "data"

    def _psql(self) -> Path:
        psql = self.bindir / "psql"
        if psql.is_file():
            return psql
        on_path = shutil.which("psql")
        if on_path is None:
            msg = f"psql not found (next to {self.bindir} or on PATH); run: {INSTALL_HINT}"
            raise PostgresNotInstalledError(msg)
        return Path(on_path)

    def _run_as_owner(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.directory,
            env=self._server_env(),
            **self._owner_kwargs(),
        )

    def _initdb(self) -> None:
        proc = self._run_as_owner(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self._data),
                "--username",
                SUPERUSER,
                "--encoding",
                "UTF8",
                "--no-locale",
                # Local (Unix socket, in a directory only the owner can enter): the superuser.
                "--auth-local",
                "trust",
                # TCP: password only.
                "--auth-host",
                "scram-sha-256",
                "--no-sync",
            ]
        )
        if proc.returncode != 0:
            msg = (
                f"initdb failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
            raise RuntimeError(msg)

    def _spawn_on_a_free_port(self, attempts: int = 3) -> None:
        """Start the server; another process may take the free port first, so retry."""
        for _ in range(attempts):
            self.port = free_loopback_port()
            if self._spawn():
                return
        msg = f"PostgreSQL did not start:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def _spawn(self) -> bool:
        """Start `postgres` on `self.port`; True once it accepts connections, False if it exited."""
        assert self.directory is not None
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "max_connections": "50",
            **self.settings,
        }
        cmd = [str(self.bindir / "postgres"), "-D", str(self._data)]
        for name, value in settings.items():
            cmd += ["-c", f"{name}={value}"]
        log = (self.directory / "server.log").open("ab")
        with log:
            self._process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.directory,
                env=self._server_env(),
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not the server
                **self._owner_kwargs(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            if self._ready():
                return True
            time.sleep(0.1)
        msg = f"PostgreSQL not ready after {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def _ready(self) -> bool:
        proc = subprocess.run(
            [
                str(self.bindir / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                "1",
            ],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def _superuser_sql(self, sql: str) -> str:
        assert self.directory is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        proc = subprocess.run(
            [
                str(self._psql()),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.directory),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            msg = f"psql (superuser) failed: {proc.stderr.strip()}"
            raise RuntimeError(msg)
        return proc.stdout

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if self._owner is not None:
            env.update(HOME=self._owner.pw_dir, USER=self._owner.pw_name)
        return env

    def _owner_kwargs(self) -> dict[str, t.Any]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}


def _server_owner() -> pwd.struct_passwd | None:
    """The user the cluster belongs to: None (this process's) unless this process is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    msg = "running as root and there is neither a `postgres` nor a `nobody` user to run PostgreSQL"
    raise RuntimeError(msg)
