"""The Sales Navigator analytics export kind on the wire: listing the member's contracts."""

from __future__ import annotations

import json
import typing as t

import pytest
from loopback import Loopback, Reply

from tap_linkedin_crm.auth import StaticTokenProvider
from tap_linkedin_crm.kinds.sales_analytics import list_contracts
from tap_linkedin_crm.transport import LinkedInClient


def page(first: int, count: int, *, paging: dict[str, t.Any]) -> Reply:
    elements = [
        {"contract": f"urn:li:contract:{n}", "name": f"C{n}", "hasReportingAccess": True}
        for n in range(first, first + count)
    ]
    return Reply(200, json.dumps({"elements": elements, "paging": paging}).encode())


def contracts_from(replies: list[Reply]) -> tuple[list[str], int]:
    with Loopback(replies) as server:
        client = LinkedInClient(api_url=server.url, tokens=StaticTokenProvider("tok"), timeout=5)
        found = [c.urn for c in list_contracts(client)]
        return found, len(server.seen)


@pytest.mark.parametrize("links", [True, False], ids=["with-next-links", "without-links"])
def test_given_linkedin_pages_by_fewer_than_asked_without_total_then_every_page_read(
    links: bool,
) -> None:
    """LinkedIn may cap `count` (its paging says the count it used) and send no `total`."""

    def paging(start: int, last: bool) -> dict[str, t.Any]:
        nxt = [{"rel": "next", "href": f"/salesContracts?start={start + 10}"}] if links else []
        return {"count": 10, "start": start, "links": [] if last else nxt}

    replies = [
        page(0, 10, paging=paging(0, last=False)),
        page(10, 10, paging=paging(10, last=False)),
        page(20, 5, paging=paging(20, last=True)),
    ]
    found, requests = contracts_from(replies)
    assert found == [f"urn:li:contract:{n}" for n in range(25)]
    assert requests == 3


def test_given_linkedin_ignoring_start_then_the_listing_ends_without_looping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that answers the same full page whatever `start` says: read once, no loop."""
    full = page(0, 50, paging={"count": 50, "start": 0, "links": []})
    found, requests = contracts_from([full])
    assert found == [f"urn:li:contract:{n}" for n in range(50)]
    assert requests <= 2
    # The list may be cut short (contracts after the first page never seen): said, not silent.
    assert "seems to ignore `start`" in caplog.text
    assert "contract_ids" in caplog.text
