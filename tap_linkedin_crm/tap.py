"""TapLinkedInCRM: settings, streams, and the sync run around them."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import typing as t

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from tap_linkedin_crm.columns import COLUMN_TYPE_NAMES, DEFAULT_COLUMN_TYPES, ColumnType
from tap_linkedin_crm.errors import LinkedInCRMError, SyncInterruptedError
from tap_linkedin_crm.run import ExportRun, plan_for
from tap_linkedin_crm.settings import CONFIG_SCHEMA, MAX_LOOKBACK, Settings, load_settings
from tap_linkedin_crm.streams import (
    IN_FLIGHT,
    CrmInstanceStream,
    ExportsStream,
    RecordsStream,
)

if t.TYPE_CHECKING:
    from types import FrameType

    from singer_sdk.helpers.capabilities import CapabilitiesEnum


LOGGER = logging.getLogger("tap-linkedin-crm")


class SyncFailedError(LinkedInCRMError):
    """Some CRM instances failed; the others were synced and their bookmarks moved."""


class TapLinkedInCRM(Tap):
    """Singer tap for LinkedIn Sales Navigator CRM Data Validation exports."""

    name = "tap-linkedin-crm"
    config_jsonschema = CONFIG_SCHEMA
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.DISCOVER,
        TapCapabilities.STATE,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
    ]

    _export_run: ExportRun | None = None

    @property
    def column_types(self) -> dict[str, ColumnType]:
        """Built-in typed columns plus `column_types` from config (bad entries are left to sync)."""
        types = dict(DEFAULT_COLUMN_TYPES)
        for column, type_name in (self.config.get("column_types") or {}).items():
            if type_name in COLUMN_TYPE_NAMES:
                types[str(column)] = t.cast("ColumnType", type_name)
        return types

    def discover_streams(self) -> list[CrmInstanceStream]:
        """Records first: an export's summary is emitted only after all its rows."""
        return [RecordsStream(self), ExportsStream(self)]

    @property
    def export_run(self) -> ExportRun:
        """The current sync run (set up by `sync_all`).

        Raises:
            RuntimeError: Called outside a sync.
        """
        if self._export_run is None:
            msg = "no sync in progress"
            raise RuntimeError(msg)
        return self._export_run

    def sync_all(self) -> None:
        """Create every instance's job up front, sync the streams, then report failures.

        Raises:
            SyncFailedError: One or more CRM instances failed (the others were synced).
            SyncInterruptedError: SIGTERM/Ctrl-C; the emitted state resumes the export.
        """
        settings = load_settings(self.config)
        records = self.streams[RecordsStream.name]
        exports = self.streams[ExportsStream.name]
        if not (records.selected or exports.selected):
            super().sync_all()
            return
        run = ExportRun(settings, records_selected=records.selected)
        self._export_run = run
        owner = t.cast("CrmInstanceStream", records if records.selected else exports)
        previous = self._install_signal_handlers(run)
        try:
            default_start = _default_start(settings)
            plans = [
                plan_for(i.urn, owner.instance_state(i.urn), default_start=default_start)
                for i in settings.instances
            ]
            run.start(plans)
            for export in run.coordinator.exports.values():
                if export.job_id is not None:
                    owner.instance_state(export.urn)[IN_FLIGHT] = run.in_flight(export)
            self.state_writer.write_state(self.state)
            super().sync_all()
        finally:
            run.close()
            self._restore_signal_handlers(previous)
            self._export_run = None
        if run.failures:
            lines = [f"{urn}: {error}" for urn, error in run.failures.items()]
            msg = (
                f"{len(run.failures)} of {len(settings.instances)} CRM instance(s) failed; "
                "their bookmarks were not moved, the others were synced. " + " | ".join(lines)
            )
            raise SyncFailedError(msg)

    def _install_signal_handlers(self, run: ExportRun) -> dict[int, t.Any]:
        """SIGTERM/SIGINT ask the run to stop at the next clean point (between two rows)."""

        def handler(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
            self.logger.warning(
                "Received signal %d: stopping at the next clean point and saving state.", signum
            )
            run.stopper.stop()

        previous: dict[int, t.Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. some test runners)
                continue
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, t.Any]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:  # type: ignore[override]
        """Run the CLI; known failures end with a clear message and a non-zero exit, no traceback.

        Raises:
            SystemExit: 1 for failed instances or configuration errors, 130 when interrupted.
        """
        try:
            super().invoke(*args, **kwargs)
        except SyncInterruptedError:
            LOGGER.error(  # noqa: TRY400 - the message is the whole story
                "Sync interrupted; the last STATE message resumes it where it stopped."
            )
            raise SystemExit(130) from None
        except (LinkedInCRMError, ConfigValidationError) as exc:
            LOGGER.error("%s", exc)  # noqa: TRY400
            sys.stderr.flush()
            raise SystemExit(1) from None


def _default_start(settings: Settings) -> int:
    """`start_date`, or 30 days back (LinkedIn looks back at most 30 days anyway)."""
    start = settings.start_date or (dt.datetime.now(tz=dt.UTC) - MAX_LOOKBACK)
    return int(start.timestamp() * 1000)
