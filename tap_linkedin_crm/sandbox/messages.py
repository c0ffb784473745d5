"""One HTTP exchange as the endpoints see it: the parsed request, the reply, and LinkedIn's bodies.

The error bodies follow LinkedIn's documented envelope ``{"message", "serviceErrorCode",
"status"}`` (linkedin-api.md section 1) and the 401 bodies seen in the wild; OAuth endpoints answer
with RFC 6749 ``{"error", "error_description"}`` bodies, as LinkedIn's do.
"""

from __future__ import annotations

import html
import json
import typing as t
from dataclasses import dataclass, field

from tap_linkedin_crm.sandbox.faults import FaultScope

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from email.message import Message

    from tap_linkedin_crm.sandbox.faults import Fault

RESTLI_HEADER = "X-Restli-Protocol-Version"
RESTLI_VERSION = "2.0.0"
RESTLI_REPLY_HEADER = ("X-RestLi-Protocol-Version", RESTLI_VERSION)
API_PREFIX = "/v2"


@dataclass(slots=True)
class Request:
    """A parsed request, plus what the endpoints learn about it while answering.

    Attributes:
        method: HTTP method.
        path: URL path without the query string.
        query: Decoded query parameters.
        headers: Request headers.
        body: Request body.
        endpoint: Endpoint kind (``token``, ``create``, ...), or ``None`` for other paths.
        authorized: Whether an ``Authorization`` header was sent.
        instance: CRM instance URN the request is about, once known.
        contract: Analytics contract URN the request is about, once known.
        export_type: Analytics export type the request is about, once known.
        job_id: Export job the request is about, once known.
        faults: Kinds of the scripted faults that fired on this request, in order (job faults
            decided at creation included).
        fired: The HTTP and response faults that act on this request, for the fired-fault log.
        client_secret_sent: For token requests, whether a client secret arrived (form or Basic
            auth); ``None`` for other requests. The secret itself is never kept.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    endpoint: str | None
    authorized: bool
    instance: str | None = None
    contract: str | None = None
    export_type: str | None = None
    job_id: int | None = None
    faults: list[str] = field(default_factory=list)
    fired: list[Fault] = field(default_factory=list)
    client_secret_sent: bool | None = None

    def note_fault(self, fault: Fault) -> None:
        """Note a fault that acts on this request (for the request log and the fired log)."""
        self.faults.append(fault.kind)
        self.fired.append(fault)

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, or ``None``."""
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def scope(self) -> FaultScope:
        """What the request is about, for fault filters."""
        return FaultScope(self.instance, self.contract, self.export_type)

    @property
    def api_path(self) -> str:
        """The path as LinkedIn's messages show it: without the ``/v2`` prefix."""
        return self.path.removeprefix(API_PREFIX)


@dataclass(slots=True)
class Reply:
    """What to write back.

    Attributes:
        status: HTTP status.
        headers: Headers besides ``Date``, ``Server`` and the length or transfer encoding.
        body: The whole body, when not streamed.
        stream: Body chunks, sent with chunked transfer encoding (or cut short by a fault).
        cut: A fault that cuts the connection while the body is written.
        stall: A fault that pauses the writing (before the response, or in the body).
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Iterator[bytes] | None = None
    cut: Fault | None = None
    stall: Fault | None = None


def json_reply(status: int, payload: object, headers: list[tuple[str, str]] | None = None) -> Reply:
    """A JSON reply."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Reply(status, [("Content-Type", "application/json"), *(headers or [])], body)


def error_envelope(status: int, message: str, service_error_code: int = 0) -> Reply:
    """LinkedIn's documented error envelope."""
    payload = {"message": message, "serviceErrorCode": service_error_code, "status": status}
    return json_reply(status, payload, [RESTLI_REPLY_HEADER])


def restli_header_error(req: Request) -> Reply | None:
    """LinkedIn's 400 for an API call without ``X-Restli-Protocol-Version: 2.0.0``, if it is one."""
    if req.headers.get(RESTLI_HEADER, "").strip() == RESTLI_VERSION:
        return None
    return error_envelope(400, f"{RESTLI_HEADER}: {RESTLI_VERSION} header is required")


def not_permitted(req: Request, *, status: int = 403, message: str | None = None) -> Reply:
    """LinkedIn's 403 for a call the token (or the instance) is not allowed to make."""
    text = message or f"Not enough permissions to access: {req.method} {req.api_path}"
    return error_envelope(status, text, 100)


def oauth_error(status: int, error: str, description: str) -> Reply:
    """An OAuth 2.0 error body, as LinkedIn's token endpoint sends it."""
    return json_reply(status, {"error": error, "error_description": description})


def html_reply(status: int, title: str, text: str) -> Reply:
    """A small HTML page (the authorization endpoint talks to browsers)."""
    page = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return Reply(status, [("Content-Type", "text/html; charset=utf-8")], page.encode("utf-8"))


def redirect_reply(location: str, status: int = 302) -> Reply:
    """A redirect with an empty body."""
    return Reply(status, [("Location", location)])


def missing_token_reply() -> Reply:
    """401 for an API call without an ``Authorization`` header (the documented sample)."""
    return error_envelope(401, "Empty oauth2_access_token", 401)


def invalid_token_reply() -> Reply:
    """401 for a token LinkedIn never issued."""
    body = {
        "status": 401,
        "serviceErrorCode": 65600,
        "code": "INVALID_ACCESS_TOKEN",
        "message": "Invalid access token",
    }
    return json_reply(401, body)


def expired_token_reply() -> Reply:
    """401 for an expired token."""
    body = {
        "status": 401,
        "serviceErrorCode": 65600,
        "code": "EXPIRED_ACCESS_TOKEN",
        "message": "The token used in the request has expired",
    }
    return json_reply(401, body)
