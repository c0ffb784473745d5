"""`source-linkedin-crm`: the Airbyte source's command line (`spec`, `check`, `discover`, `read`).

Every command writes AirbyteMessages, one JSON line each, to stdout and nothing else: the real
stdout is taken over at start and file descriptor 1 pointed at stderr, so a stray print or log
line of any library lands in the log instead of corrupting the protocol. Failures end as a TRACE
ERROR and exit status 1, except a `check` refused for its configuration or credentials: that is a
FAILED connection status and exit status 0, as the protocol asks.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import signal
import sys
import typing as t

from singer_sdk.exceptions import ConfigValidationError

from tap_linkedin_crm.airbyte.catalog import catalog_message, configured_streams
from tap_linkedin_crm.airbyte.check import check_connection
from tap_linkedin_crm.airbyte.failures import failure_type
from tap_linkedin_crm.airbyte.inputs import InputFileError, read_config, read_json
from tap_linkedin_crm.airbyte.messages import (
    FailureType,
    MessageWriter,
    connection_status,
    connector_config,
    error_trace,
)
from tap_linkedin_crm.airbyte.spec import spec_message
from tap_linkedin_crm.airbyte.state import tap_state_from_airbyte
from tap_linkedin_crm.engine.stopper import Stopper, stop_on_signals
from tap_linkedin_crm.errors import (
    ConsumerGoneError,
    LinkedInCRMError,
    SyncFailedError,
    SyncInterruptedError,
)
from tap_linkedin_crm.output.airbyte import REFRESH_TOKEN_SETTING, AirbyteOutput
from tap_linkedin_crm.settings import configured_families
from tap_linkedin_crm.streams import STREAM_SPECS, ExportStream
from tap_linkedin_crm.sync import run_sync
from tap_linkedin_crm.tap import TapLinkedInCRM, config_error_text

if t.TYPE_CHECKING:
    from collections.abc import Sequence

LOGGER = logging.getLogger("tap_linkedin_crm.airbyte")
PROG = "source-linkedin-crm"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command.

    Returns:
        The exit status: 0 on success (and for a failed `check`), 1 on failure.
    """
    args = _parser().parse_args(argv)
    writer = MessageWriter(_take_stdout())
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "spec":
            writer.write(spec_message())
            return 0
        if args.command == "check":
            return _check(writer, args.config)
        if args.command == "discover":
            return _discover(writer, args.config)
        return _read(writer, args.config, args.catalog, args.state)
    except ConsumerGoneError as exc:
        LOGGER.error("%s", exc)  # noqa: TRY400 - the message is the whole story
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Airbyte source for LinkedIn Sales Navigator exports."
    )
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("spec", help="print the connector specification")
    for name, description in (
        ("check", "test the configuration and the credentials"),
        ("discover", "print the catalog of streams"),
        ("read", "read the configured streams"),
    ):
        command = commands.add_parser(name, help=description)
        command.add_argument("--config", required=True, help="configuration JSON file")
        command.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        if name == "read":
            command.add_argument("--catalog", required=True, help="configured catalog JSON file")
            command.add_argument("--state", help="state JSON file (a list of STATE messages)")
    return parser


def _take_stdout() -> t.BinaryIO:
    """The real stdout for messages; file descriptor 1 then writes to stderr."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (embedded, captured)
        return t.cast("t.BinaryIO", sys.stdout.buffer)
    out = os.fdopen(os.dup(fd), "wb")
    os.dup2(sys.stderr.fileno(), fd)
    return out


def _tap(config: dict[str, t.Any]) -> TapLinkedInCRM:
    """The tap for `config` (checked against the settings schema, never read from env vars).

    The SDK's constructor installs SIGTERM/SIGINT handlers that print a Singer STATE and exit
    with status 0; an Airbyte source must not report an interrupted command as a success, so
    the handlers in place before (Python's) are put back. It also fills the defaults into the
    dict it is given: it gets a copy, so a CONTROL message sends back the config as the user
    set it, not every default pinned at this version's value.

    Raises:
        ConfigValidationError: The configuration does not match the settings schema.
    """
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return TapLinkedInCRM(
            config=copy.deepcopy(config),
            parse_env_config=False,
            validate_config=True,
            setup_mapper=False,
        )
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def declared_streams(tap: TapLinkedInCRM) -> list[ExportStream]:
    """The tap's streams in declaration order."""
    order = {spec.name: index for index, spec in enumerate(STREAM_SPECS)}
    streams = [s for s in tap.streams.values() if isinstance(s, ExportStream)]
    return sorted(streams, key=lambda s: order.get(s.name, len(order)))


def describe(error: BaseException) -> str:
    """What to tell the user about `error` (tap errors never quote secrets or signed URLs)."""
    if isinstance(error, ConfigValidationError):
        return config_error_text(error)
    if isinstance(error, LinkedInCRMError):
        return str(error)
    # Other errors may quote URLs (signed ones carry tokens): only the type is shown.
    return f"Unexpected {type(error).__name__}; run with --debug for the traceback."


def _fail(writer: MessageWriter, error: BaseException, causes: Sequence[BaseException] = ()) -> int:
    message = describe(error)
    if not isinstance(error, LinkedInCRMError | ConfigValidationError):
        LOGGER.debug("unexpected error", exc_info=error)
    LOGGER.error("%s", message)
    writer.write(
        error_trace(message, failure_type(error, causes), internal_message=type(error).__name__)
    )
    return 1


def _check(writer: MessageWriter, config_path: str) -> int:
    try:
        config = read_config(config_path)
        settings = _tap(config).settings
    except (InputFileError, ConfigValidationError) as exc:
        writer.write(connection_status(succeeded=False, message=describe(exc)))
        return 0

    def rotated(refresh_token: str) -> None:
        # Checking may use up the refresh token: the platform must store the new one.
        writer.write(connector_config({**config, REFRESH_TOKEN_SETTING: refresh_token}))

    try:
        problem = check_connection(settings, on_refresh_token_rotated=rotated)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, typed
        return _fail(writer, exc)
    if problem is not None:
        LOGGER.error("Check failed: %s", problem)
    writer.write(connection_status(succeeded=problem is None, message=problem))
    return 0


def _discover(writer: MessageWriter, config_path: str) -> int:
    """The streams of the export families the config sets up (all streams if it sets up none).

    A catalog of only usable streams lets clients select every stream (PyAirbyte's
    `select_all_streams()`) without a read failing on a family that cannot run.
    """
    try:
        config = read_config(config_path)
        tap = _tap(config)
    except (InputFileError, ConfigValidationError) as exc:
        return _fail(writer, exc)
    streams = declared_streams(tap)
    families = configured_families(config)
    usable = [s for s in streams if s.spec.kind in families]
    writer.write(catalog_message(usable or streams))
    return 0


def _read(
    writer: MessageWriter, config_path: str, catalog_path: str, state_path: str | None
) -> int:
    try:
        config = read_config(config_path)
        tap = _tap(config)
        streams = {s.name: s for s in declared_streams(tap)}
        configured = configured_streams(read_json(catalog_path, "catalog"), streams)
        raw_state = read_json(state_path, "state") if state_path else None
        state = tap_state_from_airbyte(raw_state, configured, streams)
        settings = tap.settings
    except (LinkedInCRMError, ConfigValidationError) as exc:
        return _fail(writer, exc)
    output = AirbyteOutput(writer, configured, config=config)
    stopper = Stopper()
    try:
        with stop_on_signals(stopper):
            run_sync(
                settings,
                [c.stream for c in configured],
                output,
                state,
                stopper,
                on_refresh_token_rotated=output.refresh_token_rotated,
            )
    except ConsumerGoneError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is reported, typed
        with contextlib.suppress(ConsumerGoneError):
            output.end_streams()
        if isinstance(exc, SyncInterruptedError):
            exc = SyncInterruptedError(
                "The read was interrupted (SIGTERM or Ctrl-C); the next read resumes "
                "from its last STATE."
            )
        causes = exc.failures if isinstance(exc, SyncFailedError) else ()
        return _fail(writer, exc, causes)
    skipped = output.end_streams()
    if skipped:
        msg = (
            f"Not read: {', '.join(skipped)}: the export family of these streams is not "
            "configured (the log names the setting to add). Add it, or deselect the streams."
        )
        writer.write(error_trace(msg, FailureType.CONFIG))
        LOGGER.error("%s", msg)
        return 1
    return 0
