"""Which endpoint a request is for, and who answers it."""

from __future__ import annotations

import typing as t

from tap_linkedin_crm.sandbox.analytics_api import (
    ANALYTICS_JOB_PATH_RE,
    ANALYTICS_JOBS_PATH,
    CONTRACTS_PATH,
)
from tap_linkedin_crm.sandbox.crm_api import JOB_PATH_RE, JOBS_PATH
from tap_linkedin_crm.sandbox.downloads import AMBRY_PATHS
from tap_linkedin_crm.sandbox.faults import ANALYTICS_API_ENDPOINTS, CRM_API_ENDPOINTS
from tap_linkedin_crm.sandbox.messages import error_envelope
from tap_linkedin_crm.sandbox.oauth import AUTHORIZATION_PATH, REDIRECTED_TOKEN_PATH, TOKEN_PATH

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox.analytics_api import SalesAnalytics
    from tap_linkedin_crm.sandbox.context import SandboxContext
    from tap_linkedin_crm.sandbox.crm_api import CrmExportJobs
    from tap_linkedin_crm.sandbox.downloads import Downloads
    from tap_linkedin_crm.sandbox.messages import Reply, Request
    from tap_linkedin_crm.sandbox.oauth import OAuthServer

#: Path to (method, endpoint kind) for the fixed paths.
_FIXED_PATHS: dict[str, tuple[str, str]] = {
    TOKEN_PATH: ("POST", "token"),
    REDIRECTED_TOKEN_PATH: ("POST", "token_redirected"),
    AUTHORIZATION_PATH: ("GET", "authorize"),
    JOBS_PATH: ("POST", "create"),
    CONTRACTS_PATH: ("GET", "contracts"),
    ANALYTICS_JOBS_PATH: ("POST", "analytics_create"),
    **dict.fromkeys(AMBRY_PATHS, ("GET", "download")),
}


def classify(method: str, path: str) -> str | None:
    """The endpoint kind of a request (what faults match on), or ``None`` if there is none."""
    fixed = _FIXED_PATHS.get(path)
    if fixed is not None:
        return fixed[1] if method == fixed[0] else None
    if JOB_PATH_RE.match(path):
        return "get" if method == "GET" else None
    if ANALYTICS_JOB_PATH_RE.match(path):
        return "analytics_get" if method == "GET" else None
    return None


def _is_resource(path: str) -> bool:
    return (
        path in _FIXED_PATHS
        or JOB_PATH_RE.match(path) is not None
        or ANALYTICS_JOB_PATH_RE.match(path) is not None
    )


class Router:
    """Hands each request to the part of the sandbox that serves its endpoint."""

    def __init__(
        self,
        ctx: SandboxContext,
        oauth: OAuthServer,
        crm: CrmExportJobs,
        analytics: SalesAnalytics,
        downloads: Downloads,
    ) -> None:
        """Route to these endpoint handlers."""
        self._ctx = ctx
        self._oauth = oauth
        self._crm = crm
        self._analytics = analytics
        self._downloads = downloads

    def handle(self, req: Request) -> Reply:
        """Answer one request, and log the faults that acted on it."""
        try:
            return self._route(req)
        finally:
            self._ctx.record_request_faults(req)

    def _route(self, req: Request) -> Reply:
        endpoint = req.endpoint
        if endpoint in CRM_API_ENDPOINTS:
            return self._crm.handle(req)
        if endpoint in ANALYTICS_API_ENDPOINTS:
            return self._analytics.handle(req)
        handlers = {
            "token": self._oauth.token_endpoint,
            "token_redirected": self._oauth.redirected_token_endpoint,
            "authorize": self._oauth.authorization_endpoint,
            "download": self._downloads.serve,
        }
        handler = handlers.get(endpoint or "")
        if handler is not None:
            return handler(req)
        if _is_resource(req.path):
            return error_envelope(405, f"Method {req.method} is not allowed on this resource")
        return error_envelope(404, f"No resource found for {req.path}")
