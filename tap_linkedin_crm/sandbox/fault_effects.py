"""What a fired fault does to a response: replace it, spoil its body, or act on the wire."""

from __future__ import annotations

import typing as t
from http import HTTPStatus

from tap_linkedin_crm.sandbox.faults import CUT_FAULTS
from tap_linkedin_crm.sandbox.messages import (
    RESTLI_REPLY_HEADER,
    error_envelope,
    expired_token_reply,
    json_reply,
    not_permitted,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_linkedin_crm.sandbox.faults import Fault
    from tap_linkedin_crm.sandbox.messages import Reply, Request

#: LinkedIn's 429 body, as seen in the wild (linkedin-api.md section 1).
DAILY_LIMIT_MESSAGE = (
    "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."
)


def fault_reply(
    fault: Fault,
    req: Request,
    pause: Callable[[float], None],
    *,
    expire_token: Callable[[], None] | None = None,
) -> Reply | None:
    """The reply a fault replaces the answer with, or ``None`` to answer (maybe later).

    Args:
        fault: The HTTP fault that fired.
        req: The request it fired on.
        pause: Waits the given seconds (for ``slow``).
        expire_token: Expires the caller's token (for ``token_expired``, on API calls).
    """
    kind = fault.kind
    if kind == "rate_limit":
        headers = [RESTLI_REPLY_HEADER]
        if fault.retry_after is not None:
            headers.append(("Retry-After", str(fault.retry_after)))
        message = fault.message or DAILY_LIMIT_MESSAGE
        return json_reply(429, {"message": message, "status": 429}, headers)
    if kind == "error":
        status = fault.status or 500
        return error_envelope(status, fault.message or HTTPStatus(status).phrase)
    if kind == "forbidden":
        return not_permitted(req, status=fault.status or 403, message=fault.message)
    if kind == "token_expired":
        if expire_token is not None:
            expire_token()
        return expired_token_reply()
    if kind == "slow":
        pause(fault.delay)
    return None


def with_transport_fault(reply: Reply, fault: Fault | None) -> Reply:
    """Attach a fault that acts while the reply is written (a cut or a stall)."""
    if fault is not None and fault.kind in CUT_FAULTS:
        reply.cut = fault
    elif fault is not None and fault.kind == "stall":
        reply.stall = fault
    return reply


def spoil_job_body(fault: Fault | None, body: dict[str, t.Any], *, url_field: str) -> object:
    """Apply a response fault to a job-status answer.

    Args:
        fault: The response fault that fired, or ``None``.
        body: The answer as it would be sent; altered in place.
        url_field: ``downloadUrls`` (CRM, a list) or ``downloadUrl`` (analytics, a string).

    Returns:
        The body to send: ``body`` (maybe altered), or the non-object that replaces it.
    """
    kind = fault.kind if fault is not None else None
    variant = fault.variant if fault is not None else None
    if kind == "download_urls_missing":
        if variant == "absent":
            body.pop(url_field, None)
        elif variant == "empty":
            body[url_field] = [] if url_field == "downloadUrls" else ""
        else:
            body[url_field] = None
    elif kind == "null_export_window":
        body["exportEndAt"] = body["nextExportStartAt"] = None
    elif kind == "lowercase_status":
        body["status"] = str(body["status"]).lower()
    elif kind == "row_count_mismatch" and fault is not None:
        body["rowCount"] = max(0, body["rowCount"] + fault.delta)
    elif kind == "non_object_body":
        replacements: dict[str, object] = {
            "string": body.get("status"),
            "null": None,
            "number": body.get("jobId", body.get("id")),
        }
        return replacements.get(variant or "array", [body])
    return body
