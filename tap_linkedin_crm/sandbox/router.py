"""Which endpoint a request is for, and who answers it."""

from __future__ import annotations

import typing as t

from tap_linkedin_crm.sandbox.crm_api import JOB_PATH_RE, JOBS_PATH
from tap_linkedin_crm.sandbox.downloads import AMBRY_PATHS
from tap_linkedin_crm.sandbox.messages import error_envelope
from tap_linkedin_crm.sandbox.oauth import TOKEN_PATH

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox.crm_api import CrmExportJobs
    from tap_linkedin_crm.sandbox.downloads import Downloads
    from tap_linkedin_crm.sandbox.messages import Reply, Request
    from tap_linkedin_crm.sandbox.oauth import OAuthServer


def classify(method: str, path: str) -> str | None:
    """The endpoint kind of a request (what faults match on), or ``None`` if there is none."""
    if path == TOKEN_PATH:
        return "token" if method == "POST" else None
    if path == JOBS_PATH:
        return "create" if method == "POST" else None
    if JOB_PATH_RE.match(path):
        return "get" if method == "GET" else None
    if path in AMBRY_PATHS:
        return "download" if method == "GET" else None
    return None


def _is_resource(path: str) -> bool:
    return path in {TOKEN_PATH, JOBS_PATH} or JOB_PATH_RE.match(path) is not None


class Router:
    """Hands each request to the part of the sandbox that serves its endpoint."""

    def __init__(self, oauth: OAuthServer, crm: CrmExportJobs, downloads: Downloads) -> None:
        """Route to these endpoint handlers."""
        self._oauth = oauth
        self._crm = crm
        self._downloads = downloads

    def handle(self, req: Request) -> Reply:
        """Answer one request."""
        endpoint = req.endpoint
        if endpoint == "token":
            return self._oauth.token_endpoint(req)
        if endpoint in {"create", "get"}:
            return self._crm.handle(req)
        if endpoint == "download":
            return self._downloads.serve(req)
        if _is_resource(req.path):
            return error_envelope(405, f"Method {req.method} is not allowed on this resource")
        return error_envelope(404, f"No resource found for {req.path}")
