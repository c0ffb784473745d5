"""Clients and helpers for the sandbox tests of the 3-legged flow and the analytics API."""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qs, urlsplit

import requests

from tap_linkedin_crm.sandbox import EMEA_CONTRACT

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox import Sandbox

DAY_MS = 86_400_000
REDIRECT_URI = "http://127.0.0.1:8765/callback"


class MemberClient:
    """The calls of the 3-legged flow and the analytics API, without retries."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.session = requests.Session()
        self.token: str | None = None

    def close(self) -> None:
        self.session.close()

    # -- OAuth ---------------------------------------------------------------------------------

    def authorize(self, **params: str):
        query = {
            "response_type": "code",
            "client_id": "sandbox-client",
            "redirect_uri": REDIRECT_URI,
            "state": "st4te",
            "scope": "r_sales_nav_analytics",
        }
        query.update(params)
        return self.session.get(
            self.sb.authorization_url, params=query, allow_redirects=False, timeout=10
        )

    def code(self, **params: str) -> str:
        with self.authorize(**params) as resp:
            assert resp.status_code == 302, resp.text
            return redirect_params(resp)["code"]

    def token_call(self, **form: str):
        data = {"client_id": "sandbox-client", "client_secret": "sandbox-secret", **form}
        return self.session.post(self.sb.token_url, data=data, timeout=10)

    def exchange(self, code: str, redirect_uri: str = REDIRECT_URI, **form: str):
        return self.token_call(
            grant_type="authorization_code", code=code, redirect_uri=redirect_uri, **form
        )

    def refresh(self, refresh_token: str, **form: str):
        return self.token_call(grant_type="refresh_token", refresh_token=refresh_token, **form)

    def login(self) -> str:
        self.token = self.sb.issue_member_tokens()[0]
        return self.token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Restli-Protocol-Version": "2.0.0"}

    # -- API -----------------------------------------------------------------------------------

    def contracts(self, **params: t.Any):
        headers = params.pop("headers", self.headers())
        return self.session.get(
            f"{self.sb.api_url}/salesContracts",
            params={"q": "contractsByMember", **params},
            headers=headers,
            timeout=10,
        )

    def window(self, days: float = 7, end_offset_ms: int = 0) -> tuple[int, int]:
        end = self.sb.clock.now_ms() - end_offset_ms
        return end - int(days * DAY_MS), end

    def create(
        self,
        action: str | None = "exportActivityData",
        contract: str = EMEA_CONTRACT,
        start: object = None,
        end: object = None,
        **kwargs: t.Any,
    ):
        headers = kwargs.pop("headers", self.headers())
        if start is None and end is None:
            start, end = self.window()
        body = kwargs.pop("body", {"contract": contract, "startAt": start, "endAt": end})
        params = {"action": action} if action is not None else {}
        return self.session.post(
            f"{self.sb.api_url}/salesAnalyticsExportJobs",
            params=params,
            json=body,
            headers=headers,
            **{"timeout": 10, **kwargs},
        )

    def create_job(
        self,
        action: str = "exportActivityData",
        contract: str = EMEA_CONTRACT,
        start: int | None = None,
        end: int | None = None,
    ) -> int:
        with self.create(action, contract, start, end) as resp:
            assert resp.status_code == 200, resp.text
            body = resp.json()
        assert body["value"]["status"] == "ENQUEUED"
        return int(body["value"]["id"])

    def get(self, job_id: int | str, contract: str | None = EMEA_CONTRACT, **kwargs: t.Any):
        headers = kwargs.pop("headers", self.headers())
        params = {"contract": contract} if contract is not None else {}
        return self.session.get(
            f"{self.sb.api_url}/salesAnalyticsExportJobs/{job_id}",
            params=params,
            headers=headers,
            **{"timeout": 10, **kwargs},
        )

    def get_json(self, job_id: int, contract: str = EMEA_CONTRACT) -> dict[str, t.Any]:
        with self.get(job_id, contract) as resp:
            assert resp.status_code == 200, resp.text
            return resp.json()

    def wait_done(self, job_id: int, contract: str = EMEA_CONTRACT) -> dict[str, t.Any]:
        for _ in range(20):
            body = self.get_json(job_id, contract)
            if body["status"] not in {"ENQUEUED", "PROCESSING"}:
                return body
        msg = "job never finished"
        raise AssertionError(msg)

    def download(self, url: str, **kwargs: t.Any):
        return self.session.get(url, **{"timeout": 10, **kwargs})


def redirect_params(resp: requests.Response) -> dict[str, str]:
    """The query parameters of a redirect's Location (one value each)."""
    location = resp.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
