"""TapLinkedInCRM: the settings schema, the streams, and clean exits for known failures."""

from __future__ import annotations

import copy
import logging
import sys
import typing as t

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from tap_linkedin_crm.columns import COLUMN_TYPE_NAMES, DEFAULT_COLUMN_TYPES, ColumnType
from tap_linkedin_crm.errors import LinkedInCRMError, SyncInterruptedError
from tap_linkedin_crm.settings import CONFIG_SCHEMA, RESERVED_FIELDS
from tap_linkedin_crm.streams import CrmInstanceStream, ExportsStream, RecordsStream
from tap_linkedin_crm.writer import BufferedSingerWriter

if t.TYPE_CHECKING:
    from singer_sdk.helpers.capabilities import CapabilitiesEnum

    from tap_linkedin_crm.run import ExportRun

LOGGER = logging.getLogger("tap-linkedin-crm")

#: Exit status of a sync stopped by SIGTERM/Ctrl-C (its last STATE resumes it).
EXIT_INTERRUPTED = 130


class TapLinkedInCRM(Tap):
    """Singer tap for LinkedIn Sales Navigator CRM Data Validation exports."""

    name = "tap-linkedin-crm"
    # A copy: the SDK adds its built-in settings (stream_maps, ...) to the tap's schema dict.
    config_jsonschema = copy.deepcopy(CONFIG_SCHEMA)
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.DISCOVER,
        TapCapabilities.STATE,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
    ]

    #: The SDK's writer plus a buffered channel for the records stream's pre-encoded lines.
    message_writer_class = BufferedSingerWriter

    #: The sync in progress; set by the records stream, which drives every export job.
    export_run: ExportRun | None = None

    @property
    def column_types(self) -> dict[str, ColumnType]:
        """Built-in typed columns plus `column_types` from config (bad entries fail the sync)."""
        types = dict(DEFAULT_COLUMN_TYPES)
        for column, type_name in (self.config.get("column_types") or {}).items():
            if type_name in COLUMN_TYPE_NAMES and column not in RESERVED_FIELDS:
                types[str(column)] = t.cast("ColumnType", type_name)
        return types

    def discover_streams(self) -> list[CrmInstanceStream]:
        """The records stream, and its child the exports stream (one record per finished job)."""
        return [RecordsStream(self), ExportsStream(self)]

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:  # noqa: ANN401 - passes the CLI's arguments through
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
            raise SystemExit(EXIT_INTERRUPTED) from None
        except ConfigValidationError as exc:
            details = [e for e in exc.errors if e not in str(exc)]
            LOGGER.error("%s", "; ".join([str(exc), *details]))  # noqa: TRY400 - message says all
            sys.stderr.flush()
            raise SystemExit(1) from None
        except LinkedInCRMError as exc:
            LOGGER.error("%s", exc)  # noqa: TRY400 - the message is the whole story
            sys.stderr.flush()
            raise SystemExit(1) from None
