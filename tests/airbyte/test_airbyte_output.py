"""The Airbyte output on its own: heartbeats while jobs run, no repeated state, rotated tokens.

The engine calls `waiting` about once a minute while it polls jobs; Airbyte fails a source that
sends no RECORD or STATE for three hours. A clock the test moves stands in for those hours.
"""

from __future__ import annotations

import io
import threading
import typing as t

import pytest
from conftest import EXPORTS, RECORDS, validated

from tap_linkedin_crm.airbyte.catalog import ConfiguredStream
from tap_linkedin_crm.airbyte.messages import MessageWriter
from tap_linkedin_crm.output.airbyte import HEARTBEAT_SECONDS, AirbyteOutput
from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE
from tap_linkedin_crm.tap import TapLinkedInCRM

if t.TYPE_CHECKING:
    from tap_linkedin_crm.streams import ExportStream

CONFIG = {"crm_instance_ids": [DYNAMICS_INSTANCE], "refresh_token": "old", "access_token": "tok"}
PENDING = {
    "bookmarks": {
        RECORDS: {
            "partitions": [
                {
                    "context": {"crmInstanceId": DYNAMICS_INSTANCE},
                    "inFlightJob": {"jobId": 148, "exportStartAt": 1, "attempt": 1},
                }
            ]
        }
    }
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self) -> None:
        tap = TapLinkedInCRM(config=CONFIG, setup_mapper=False)
        self.streams = [t.cast("ExportStream", tap.streams[n]) for n in (RECORDS, EXPORTS)]
        self.clock = Clock()
        self.buffer = io.BytesIO()
        self.writer = MessageWriter(t.cast("t.BinaryIO", self.buffer), clock=self.clock)
        configured = [ConfiguredStream(s, "incremental") for s in self.streams]
        self.output = AirbyteOutput(self.writer, configured, config=CONFIG, clock=self.clock)
        self.read = 0

    def new_messages(self) -> list[dict[str, t.Any]]:
        lines = self.buffer.getvalue().decode().splitlines()
        new, self.read = lines[self.read :], len(lines)
        return [validated(line) for line in new]


@pytest.fixture
def harness() -> Harness:
    return Harness()


def states(messages: list[dict[str, t.Any]]) -> list[tuple[str, dict[str, t.Any]]]:
    return [
        (m["state"]["stream"]["stream_descriptor"]["name"], m["state"]["stream"]["stream_state"])
        for m in messages
        if m["type"] == "STATE"
    ]


def test_waiting_jobs_send_a_changed_state_once_the_heartbeat_is_due(harness: Harness) -> None:
    output = harness.output
    output.start(harness.streams)
    output.checkpoint(PENDING)
    sent = states(harness.new_messages())
    assert [name for name, _ in sent] == [EXPORTS, RECORDS]  # the owner's last
    output.waiting(PENDING)  # nothing changed, no heartbeat due: silence
    assert harness.new_messages() == []

    beats = []
    for _ in range(3):
        harness.clock.now += HEARTBEAT_SECONDS - 60
        output.waiting(PENDING)
        assert harness.new_messages() == [], "a heartbeat before it was due"
        harness.clock.now += 60
        output.waiting(PENDING)
        ((name, blob),) = states(harness.new_messages())
        assert name == RECORDS
        assert blob["partitions"] == PENDING["bookmarks"][RECORDS]["partitions"]
        beats.append(blob["heartbeatAt"])
    assert len(set(beats)) == len(beats), "heartbeat states must differ"
    assert HEARTBEAT_SECONDS <= 30 * 60 - 60, "one waiting call a minute must keep gaps <= 30 min"


def test_records_are_a_heartbeat_too_and_an_unchanged_state_is_never_repeated(
    harness: Harness,
) -> None:
    output = harness.output
    output.start(harness.streams)
    records = output.sink(harness.streams[0])
    harness.clock.now += HEARTBEAT_SECONDS
    records.write(
        {"crmInstanceId": DYNAMICS_INSTANCE, "jobId": 148, "fileIndex": 0, "rowNumber": 1}
    )
    records.flush()
    output.waiting(PENDING)
    messages = harness.new_messages()
    assert [m["type"] for m in messages] == ["TRACE"] * 3 + ["RECORD", "STATE", "STATE"]
    assert [m["state"]["sourceStats"]["recordCount"] for m in messages[-2:]] == [0.0, 1.0]
    output.checkpoint(PENDING)
    output.checkpoint(PENDING)
    assert harness.new_messages() == []


def test_a_rotated_refresh_token_is_sent_as_the_new_config_from_any_thread(
    harness: Harness,
) -> None:
    rotated = threading.Thread(target=harness.output.refresh_token_rotated, args=("new-token",))
    rotated.start()
    rotated.join()
    (message,) = harness.new_messages()
    assert message["type"] == "CONTROL"
    assert message["control"]["type"] == "CONNECTOR_CONFIG"
    assert message["control"]["connectorConfig"]["config"] == {
        **CONFIG,
        "refresh_token": "new-token",
    }


def test_close_ends_every_open_stream_incomplete_and_names_the_streams_never_run(
    harness: Harness,
) -> None:
    output = harness.output
    output.start(harness.streams[:1])
    output.finish(harness.streams[0], complete=True)
    assert output.end_streams() == [EXPORTS]
    ends = [
        (
            m["trace"]["stream_status"]["stream_descriptor"]["name"],
            m["trace"]["stream_status"]["status"],
        )
        for m in harness.new_messages()
        if m["type"] == "TRACE"
    ]
    assert ends == [
        (RECORDS, "STARTED"),
        (EXPORTS, "STARTED"),
        (RECORDS, "COMPLETE"),
        (EXPORTS, "INCOMPLETE"),
    ]
