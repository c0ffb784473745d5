"""The sandbox: LinkedIn's export APIs on loopback, with controls and inspection for tests."""

from __future__ import annotations

import threading
import typing as t

from tap_linkedin_crm.sandbox.clock import SandboxClock
from tap_linkedin_crm.sandbox.context import SandboxContext
from tap_linkedin_crm.sandbox.crm_api import CrmExportJobs
from tap_linkedin_crm.sandbox.data import BaseCache
from tap_linkedin_crm.sandbox.downloads import Downloads
from tap_linkedin_crm.sandbox.faults import FaultBook
from tap_linkedin_crm.sandbox.oauth import TOKEN_PATH, OAuthServer
from tap_linkedin_crm.sandbox.request_log import RequestLog, RequestRecord
from tap_linkedin_crm.sandbox.router import Router
from tap_linkedin_crm.sandbox.scenario import Scenario
from tap_linkedin_crm.sandbox.transport import SandboxHTTPServer

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from tap_linkedin_crm.sandbox.downloads import Downloadable
    from tap_linkedin_crm.sandbox.faults import Fault

__all__ = ["RequestRecord", "Sandbox"]

#: How long :attr:`Sandbox.requests` waits for requests still being answered.
REQUEST_LOG_WAIT = 1.0


class Sandbox:
    """A fake LinkedIn export API on a threaded loopback HTTP server.

    Use it as a context manager (``with Sandbox(scenario) as sb: ...``) or call :meth:`start`
    and :meth:`stop`. All state (tokens, jobs, fault counters, the request log) is per instance.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: SandboxClock | None = None,
    ) -> None:
        """Prepare a sandbox; nothing listens until :meth:`start` (or ``with``).

        Args:
            scenario: What to serve and which faults to inject; defaults to ``Scenario()``.
            host: Interface to bind.
            port: Port to bind; 0 picks a free one.
            clock: Clock to use; defaults to a fresh real-time :class:`SandboxClock`.
        """
        self.scenario = scenario if scenario is not None else Scenario()
        self.clock = clock if clock is not None else SandboxClock()
        self._host = host
        self._port = port
        self._faults = FaultBook(self.scenario.faults)
        self._ctx = SandboxContext(self.scenario, self.clock, self._faults, lambda: self.base_url)
        self._oauth = OAuthServer(self._ctx)
        self._downloads = Downloads(self._ctx, self._find_job)
        self._crm = CrmExportJobs(self._ctx, self._oauth, self._downloads, BaseCache())
        self._router = Router(self._oauth, self._crm, self._downloads)
        self._request_log = RequestLog()
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind the server and serve it from a background thread.

        Returns:
            The sandbox itself.

        Raises:
            RuntimeError: If the sandbox is already running.
        """
        if self._server is not None:
            msg = "sandbox already started"
            raise RuntimeError(msg)
        self._ctx.stopping.clear()
        self._server = SandboxHTTPServer(
            (self._host, self._port), self._ctx, self._router, self._request_log
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="linkedin-crm-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._ctx.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> t.Self:
        """Start the sandbox."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the sandbox."""
        self.stop()

    # -- addresses and config ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server.

        Raises:
            RuntimeError: If the sandbox is not running.
        """
        if self._server is None:
            msg = "sandbox is not running"
            raise RuntimeError(msg)
        host, port = self._server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        if ":" in host_text:
            host_text = f"[{host_text}]"
        return f"http://{host_text}:{port}"

    @property
    def api_url(self) -> str:
        """Base URL of the REST API (``base_url + "/v2"``)."""
        return f"{self.base_url}/v2"

    @property
    def token_url(self) -> str:
        """URL of the OAuth token endpoint."""
        return f"{self.base_url}{TOKEN_PATH}"

    def tap_config(self, **overrides: t.Any) -> dict[str, t.Any]:  # noqa: ANN401
        """Return a ready tap config for this sandbox, with ``overrides`` applied on top."""
        client_id, client_secret = next(iter(self.scenario.clients.items()))
        config: dict[str, t.Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "crm_instance_ids": list(self.scenario.instances),
            "api_url": self.api_url,
            "token_url": self.token_url,
            "poll_interval": 0.05,
            "poll_max_interval": 0.2,
            "request_timeout": 10,
            "job_timeout": 60,
        }
        config.update(overrides)
        return config

    # -- inspection and control --------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first.

        Requests are logged once their response is fully written, which can be a moment after the
        client has read it; so this waits (up to ``REQUEST_LOG_WAIT`` seconds) until no request
        is being answered.
        """
        return self._request_log.snapshot(REQUEST_LOG_WAIT)

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._request_log.clear()

    @property
    def jobs(self) -> dict[int, dict[str, t.Any]]:
        """A snapshot of every CRM export job, keyed by job id."""
        with self._ctx.lock:
            return {job_id: self._crm.job_info(job) for job_id, job in self._crm.jobs.items()}

    def add_fault(self, fault: Fault) -> None:
        """Add a scripted fault while the sandbox runs (its counters start at zero)."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every scripted fault."""
        self._faults.clear()

    def issued_secrets(self) -> set[str]:
        """Every secret this sandbox knows, for tests that scan a tap's output for leaks.

        That is the client secrets, the access tokens it issued and the signed download tokens.
        """
        return (
            self._oauth.secrets() | self._downloads.secrets() | set(self.scenario.clients.values())
        )

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (the next API call gets 401)."""
        self._oauth.expire()

    def expire_download_urls(self, job_id: int | None = None) -> None:
        """Expire the download URLs of one job (or all jobs) now; a new GET issues fresh ones."""
        now = self.clock.now_ms()
        with self._ctx.lock:
            for job in self._crm.jobs.values():
                if job_id is None or job.job_id == job_id:
                    job.links.expire(now)

    def expected_rows(self, job_id: int) -> list[dict[str, str]]:
        """Return the data rows the job's files serve, in file order (raw CSV strings).

        Raises:
            KeyError: If there is no such job.
        """
        return list(self.iter_expected_rows(job_id))

    def iter_expected_rows(self, job_id: int) -> Iterator[dict[str, str]]:
        """Yield the data rows the job's files serve, in file order, without holding them all.

        Raises:
            KeyError: If there is no such job.
        """
        with self._ctx.lock:
            job = self._crm.jobs.get(job_id)
        if job is None:
            msg = f"no export job {job_id}"
            raise KeyError(msg)
        return job.files.iter_all_rows()

    def _find_job(self, job_id: int) -> Downloadable | None:
        with self._ctx.lock:
            return self._crm.jobs.get(job_id)
