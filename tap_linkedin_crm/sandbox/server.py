"""The sandbox: LinkedIn's export APIs on loopback, with controls and inspection for tests."""

from __future__ import annotations

import threading
import typing as t

from tap_linkedin_crm.sandbox.analytics_api import SalesAnalytics
from tap_linkedin_crm.sandbox.analytics_data import EXPORT_TYPES
from tap_linkedin_crm.sandbox.clock import SandboxClock
from tap_linkedin_crm.sandbox.context import SandboxContext
from tap_linkedin_crm.sandbox.crm_api import CrmExportJobs
from tap_linkedin_crm.sandbox.data import BaseCache
from tap_linkedin_crm.sandbox.downloads import Downloads
from tap_linkedin_crm.sandbox.faults import FaultBook
from tap_linkedin_crm.sandbox.oauth import (
    ANALYTICS_SCOPE,
    AUTHORIZATION_PATH,
    TOKEN_PATH,
    OAuthServer,
)
from tap_linkedin_crm.sandbox.request_log import RequestLog, RequestRecord
from tap_linkedin_crm.sandbox.router import Router
from tap_linkedin_crm.sandbox.scenario import Scenario
from tap_linkedin_crm.sandbox.transport import SandboxHTTPServer

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from types import TracebackType

    from tap_linkedin_crm.sandbox.downloads import Downloadable
    from tap_linkedin_crm.sandbox.faults import Fault, FiredFault

__all__ = ["RequestRecord", "Sandbox"]

#: How long :attr:`Sandbox.requests` waits for requests still being answered.
REQUEST_LOG_WAIT = 1.0


class Sandbox:
    """A fake LinkedIn export API on a threaded loopback HTTP server.

    It serves the CRM Data Validation API (client-credentials tokens), the Sales Navigator
    Analytics API (member tokens from the authorization-code flow), OAuth, and the downloads of
    both. Use it as a context manager (``with Sandbox(scenario) as sb: ...``) or call :meth:`start`
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
        self._analytics = SalesAnalytics(self._ctx, self._oauth, self._downloads)
        self._router = Router(self._ctx, self._oauth, self._crm, self._analytics, self._downloads)
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
        """URL of the OAuth token endpoint (every grant)."""
        return f"{self.base_url}{TOKEN_PATH}"

    @property
    def authorization_url(self) -> str:
        """URL of the OAuth authorization page (the 3-legged flow; it approves at once)."""
        return f"{self.base_url}{AUTHORIZATION_PATH}"

    def tap_config(self, *, analytics: bool = False, **overrides: t.Any) -> dict[str, t.Any]:  # noqa: ANN401
        """Return a ready tap config for this sandbox, with ``overrides`` applied on top.

        Args:
            analytics: Also fill ``refresh_token`` with a fresh member refresh token (as the
                authorization-code flow would issue it), for the analytics streams.
            **overrides: Settings to set or replace.
        """
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
        if analytics:
            config["refresh_token"] = self.issue_member_tokens(client_id=client_id)[1]
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

    @property
    def analytics_jobs(self) -> dict[int, dict[str, t.Any]]:
        """A snapshot of every analytics export job, keyed by job id (ids never clash with CRM)."""
        with self._ctx.lock:
            return {
                job_id: self._analytics.job_info(job)
                for job_id, job in self._analytics.jobs.items()
            }

    @property
    def fired_faults(self) -> list[FiredFault]:
        """The faults (and rules) that took effect so far, oldest first; see :class:`FiredFault`.

        HTTP and response faults are logged before their response is written, so an entry is
        there as soon as the client has seen (or timed out on) the response.
        """
        return self._faults.fired

    def clear_fired_faults(self) -> None:
        """Empty the fired-fault log."""
        self._faults.clear_fired()

    def add_fault(self, fault: Fault) -> None:
        """Add a scripted fault while the sandbox runs (its counters start at zero)."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every scripted fault."""
        self._faults.clear()

    def issued_secrets(self) -> set[str]:
        """Every secret this sandbox knows, for tests that scan a tap's output for leaks.

        That is the client secrets, every access token (application and member), refresh token
        and authorization code it issued, and the signed download tokens.
        """
        return (
            self._oauth.secrets() | self._downloads.secrets() | set(self.scenario.clients.values())
        )

    def issue_member_tokens(
        self,
        *,
        member: str | None = None,
        scopes: Iterable[str] = (ANALYTICS_SCOPE,),
        client_id: str | None = None,
        access_ttl_seconds: int | None = None,
        refresh_ttl_seconds: int | None = None,
    ) -> tuple[str, str]:
        """Issue a member's tokens as the authorization-code grant would, without a browser.

        Args:
            member: Person URN; defaults to ``Scenario.member``.
            scopes: Granted scopes.
            client_id: The application; defaults to the scenario's first client.
            access_ttl_seconds: Access-token lifetime; defaults to ``member_token_ttl_seconds``.
            refresh_ttl_seconds: Refresh-token lifetime, e.g. a few days to test expiry warnings;
                defaults to ``refresh_token_ttl_seconds``.

        Returns:
            A fresh access token and refresh token.
        """
        return self._oauth.issue_member_tokens(
            member=member,
            scopes=scopes,
            client_id=client_id,
            access_ttl_seconds=access_ttl_seconds,
            refresh_ttl_seconds=refresh_ttl_seconds,
        )

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (the next API call gets 401)."""
        self._oauth.expire()

    def expire_download_urls(self, job_id: int | None = None) -> None:
        """Expire the download URLs of one job (or all jobs) now; a new GET issues fresh ones."""
        now = self.clock.now_ms()
        with self._ctx.lock:
            jobs: list[Downloadable] = [*self._crm.jobs.values(), *self._analytics.jobs.values()]
            for job in jobs:
                if job_id is None or job.job_id == job_id:
                    job.links.expire(now)

    def expected_rows(self, job_id: int) -> list[dict[str, str]]:
        """Return the data rows the job's files serve, in file order (raw CSV strings).

        Works for CRM and analytics jobs alike.

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
            crm_job = self._crm.jobs.get(job_id)
            analytics_job = self._analytics.jobs.get(job_id)
        if crm_job is not None:
            return crm_job.files.iter_all_rows()
        if analytics_job is not None:
            return analytics_job.files.iter_rows()
        msg = f"no export job {job_id}"
        raise KeyError(msg)

    def analytics_rows(
        self, contract: str, export_type: str, start_at: int, end_at: int
    ) -> list[dict[str, str]]:
        """The raw rows an analytics export of ``[start_at, end_at)`` holds, for any window.

        Args:
            contract: Contract URN (one of ``Scenario.contracts``).
            export_type: ``activity``, ``activity_outcome`` or ``seat``.
            start_at: Window start, epoch ms (inclusive).
            end_at: Window end, epoch ms (exclusive).

        Raises:
            KeyError: If the contract is not in the scenario.
            ValueError: If the export type is unknown.
        """
        if export_type not in EXPORT_TYPES:
            msg = f"unknown export type {export_type!r}; known: {sorted(EXPORT_TYPES)}"
            raise ValueError(msg)
        return list(self._analytics.export(contract, export_type, start_at, end_at).iter_rows())

    def _find_job(self, job_id: int) -> Downloadable | None:
        with self._ctx.lock:
            crm_job = self._crm.jobs.get(job_id)
            return crm_job if crm_job is not None else self._analytics.jobs.get(job_id)
