"""Fixtures for the sandbox's own tests: a sandbox factory and a small LinkedIn API client."""

from __future__ import annotations

import typing as t
from urllib.parse import quote

import pytest
import requests
from sandbox_kit import MemberClient

from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, Sandbox, Scenario

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class ApiClient:
    """The few calls a tap makes, without retries, so tests see every response as sent."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.session = requests.Session()
        self.token: str | None = None

    def close(self) -> None:
        self.session.close()

    def fetch_token(self, client_id: str = "sandbox-client", secret: str = "sandbox-secret"):
        return self.session.post(
            self.sb.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
            timeout=10,
        )

    def login(self) -> str:
        with self.fetch_token() as resp:
            assert resp.status_code == 200, resp.text
            self.token = resp.json()["access_token"]
        return self.token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Restli-Protocol-Version": "2.0.0"}

    def create(self, instance: str = DYNAMICS_INSTANCE, start: object = 0, **kwargs):
        headers = kwargs.pop("headers", self.headers())
        encoded = quote(instance, safe="")
        return self.session.post(
            f"{self.sb.api_url}/crmDataValidationExportJobs?crmInstanceId={encoded}",
            json={"exportStartAt": start},
            headers=headers,
            **{"timeout": 10, **kwargs},
        )

    def create_job(self, instance: str = DYNAMICS_INSTANCE) -> int:
        with self.create(instance) as resp:
            assert resp.status_code == 201, resp.text
            return int(resp.headers["X-RestLi-Id"])

    def get(self, job_id: int, instance: str = DYNAMICS_INSTANCE, **kwargs):
        headers = kwargs.pop("headers", self.headers())
        return self.session.get(
            f"{self.sb.api_url}/crmDataValidationExportJobs/{job_id}"
            f"?crmInstanceId={quote(instance, safe='')}",
            headers=headers,
            **{"timeout": 10, **kwargs},
        )

    def get_json(self, job_id: int, instance: str = DYNAMICS_INSTANCE) -> dict[str, t.Any]:
        with self.get(job_id, instance) as resp:
            assert resp.status_code == 200, resp.text
            return resp.json()

    def wait_completed(self, job_id: int, instance: str = DYNAMICS_INSTANCE) -> dict[str, t.Any]:
        for _ in range(20):
            body = self.get_json(job_id, instance)
            if body["status"] != "PROCESSING":
                return body
        msg = "job never finished"
        raise AssertionError(msg)

    def download(self, url: str, **kwargs):
        return self.session.get(url, **{"timeout": 10, **kwargs})


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def factory(scenario: Scenario | None = None, **kwargs: t.Any) -> Sandbox:
        sb = Sandbox(scenario or Scenario(**kwargs)).start()
        started.append(sb)
        return sb

    yield factory
    for sb in started:
        sb.stop()


@pytest.fixture
def make_client() -> Iterator[Callable[[Sandbox], ApiClient]]:
    clients: list[ApiClient] = []

    def factory(sb: Sandbox) -> ApiClient:
        client = ApiClient(sb)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


@pytest.fixture
def client(sandbox: Sandbox, make_client: Callable[[Sandbox], ApiClient]) -> ApiClient:
    api = make_client(sandbox)
    api.login()
    return api


@pytest.fixture
def make_member() -> Iterator[Callable[[Sandbox], MemberClient]]:
    clients: list[MemberClient] = []

    def factory(sb: Sandbox) -> MemberClient:
        client = MemberClient(sb)
        clients.append(client)
        client.login()
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def member(sandbox: Sandbox, make_member: Callable[[Sandbox], MemberClient]) -> MemberClient:
    return make_member(sandbox)
