"""Every wait of a read keeps Airbyte's heartbeat: a STATE at least every `heartbeat_seconds`.

Airbyte fails a source that sends no RECORD or STATE for three hours. Besides polling the jobs
of a run, the engine waits while it creates them (slow or throttled creations, up to
`max_jobs_in_flight` of them) and while a job that replaces one it could not download is
processed (as long as any job). Here the heartbeat is always due and the engine's sign of life
comes on every wake-up, so a wait that never calls the output shows as a state never sent.
"""

from __future__ import annotations

import io
import typing as t

import pytest
from conftest import EXPORTS, RECORDS, validated

import tap_linkedin_crm.engine.run as engine_run
from tap_linkedin_crm.airbyte.catalog import ConfiguredStream
from tap_linkedin_crm.airbyte.messages import MessageWriter
from tap_linkedin_crm.engine.stopper import Stopper
from tap_linkedin_crm.errors import SyncInterruptedError
from tap_linkedin_crm.output.airbyte import AirbyteOutput
from tap_linkedin_crm.sandbox import SFDC_INSTANCE, Fault, InstanceSpec, Sandbox, Scenario
from tap_linkedin_crm.sync import run_sync
from tap_linkedin_crm.tap import TapLinkedInCRM

pytestmark = [pytest.mark.e2e]

Message = dict[str, t.Any]


def read(
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
    on_waiting: t.Callable[[Sandbox, Stopper], None] | None = None,
) -> tuple[list[Message], Sandbox]:
    """Read both CRM streams in process; every message, validated.

    `on_waiting` is called before each of the output's `waiting` calls.
    """
    monkeypatch.setattr(engine_run, "WAITING_EVERY_SECONDS", 0.0)
    with Sandbox(scenario) as sb:
        config = sb.tap_config(request_retry_delay=0.05)
        tap = TapLinkedInCRM(config=config, parse_env_config=False, setup_mapper=False)
        streams = [tap.streams[RECORDS], tap.streams[EXPORTS]]
        buffer = io.BytesIO()
        output = AirbyteOutput(
            MessageWriter(t.cast("t.BinaryIO", buffer)),
            [ConfiguredStream(t.cast("t.Any", s), "incremental") for s in streams],
            config=config,
            heartbeat_seconds=0.0,
        )
        stopper = Stopper()
        if on_waiting is not None:
            waiting = output.waiting

            def hooked(state: t.Mapping[str, t.Any]) -> None:
                on_waiting(sb, stopper)
                waiting(state)

            monkeypatch.setattr(output, "waiting", hooked)
        try:
            run_sync(tap.settings, streams, output, {}, stopper)
        except SyncInterruptedError:
            if on_waiting is None:
                raise
        return [validated(line) for line in buffer.getvalue().decode().splitlines()], sb


def partitions(message: Message) -> list[dict[str, t.Any]]:
    blob = message["state"]["stream"]["stream_state"]
    return t.cast("list[dict[str, t.Any]]", blob["partitions"])


def test_a_job_replacing_one_that_stayed_empty_is_waited_for_with_heartbeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = Scenario(
        instances={SFDC_INSTANCE: InstanceSpec(rows=50, files=1)},
        job_processing_polls=20,
        faults=[Fault("empty_body", endpoint="download", times=2)],
    )
    messages, sb = read(scenario, monkeypatch)
    first, replacement = sorted(sb.jobs)
    first_row = next(
        i
        for i, m in enumerate(messages)
        if m["type"] == "RECORD" and m["record"]["data"]["jobId"] == replacement
    )
    waiting = [
        m
        for m in messages[:first_row]
        if m["type"] == "STATE"
        and any(p.get("inFlightJob", {}).get("jobId") == replacement for p in partitions(m))
    ]
    assert any("heartbeatAt" in m["state"]["stream"]["stream_state"] for m in waiting), (
        "no heartbeat while the replacement job was processed"
    )
    rows = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert {r["jobId"] for r in rows} == {replacement}, f"job {first} stayed empty"


def test_jobs_being_created_slowly_are_waited_for_with_heartbeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = Scenario(faults=[Fault("slow", endpoint="create", delay=1.0, times=None)])
    messages, _ = read(scenario, monkeypatch)
    creating = [
        m
        for m in messages
        if m["type"] == "STATE"
        and "heartbeatAt" in m["state"]["stream"]["stream_state"]
        and any("inFlightJob" not in p and "nextExportStartAt" not in p for p in partitions(m))
    ]
    assert creating, "no heartbeat STATE while the jobs were being created"


def test_a_stop_asked_for_while_a_heartbeat_is_written_does_not_cut_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM raises inside `interruptible` blocks (HTTP calls): never inside output writes."""
    scenario = Scenario(
        instances={SFDC_INSTANCE: InstanceSpec(rows=50, files=1)},
        job_processing_polls=20,
        faults=[Fault("empty_body", endpoint="download", times=2)],
    )
    signalled: list[bool] = []

    def sigterm_while_replacing(sb: Sandbox, stopper: Stopper) -> None:
        if len(sb.jobs) == 2 and not signalled:
            signalled.append(False)
            stopper.signal_stop()  # what the SIGTERM handler does
            signalled[0] = True  # reached only if the stop did not raise here

    messages, sb = read(scenario, monkeypatch, sigterm_while_replacing)
    assert signalled == [True], "the stop raised inside the output's waiting call"
    assert len(sb.jobs) == 2
    assert messages[-1]["type"] == "STATE"
