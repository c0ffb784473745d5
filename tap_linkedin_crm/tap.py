"""TapLinkedInCRM: the settings schema, the streams, and clean exits for known failures."""

from __future__ import annotations

import copy
import logging
import sys
import typing as t

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from tap_linkedin_crm.columns import COLUMN_TYPE_NAMES, DEFAULT_COLUMN_TYPES, ColumnType
from tap_linkedin_crm.errors import LinkedInCRMError, SyncInterruptedError
from tap_linkedin_crm.settings import DEFAULT_API_URL, DEFAULT_TOKEN_URL, RESERVED_FIELDS
from tap_linkedin_crm.streams import CrmInstanceStream, ExportsStream, RecordsStream
from tap_linkedin_crm.writer import BufferedSingerWriter

if t.TYPE_CHECKING:
    from singer_sdk.helpers.capabilities import CapabilitiesEnum

    from tap_linkedin_crm.run import ExportRun

LOGGER = logging.getLogger("tap-linkedin-crm")

#: Exit status of a sync stopped by SIGTERM/Ctrl-C (its last STATE resumes it).
EXIT_INTERRUPTED = 130

#: The settings: the single source of truth. meltano.yml, the README settings table,
#: `.env.example` and `catalog.json` are generated from the tap (`make docs`), and
#: tests/test_settings_sync.py keeps them equal.
CONFIG_SCHEMA: dict[str, t.Any] = th.PropertiesList(
    th.Property(
        "crm_instance_ids",
        th.ArrayType(th.StringType),
        required=True,
        title="CRM instance URNs",
        description=(
            "CRM instances to export, as URNs: `urn:li:crmInstance:(DYNAMICS,<org guid>)` or "
            "`urn:li:crmInstance:(SFDC,<org id>)`. Each one gets its own export job and bookmark."
        ),
    ),
    th.Property(
        "client_id",
        th.StringType,
        title="Client ID",
        description="LinkedIn app client ID, for the client-credentials (2-legged OAuth) flow.",
    ),
    th.Property(
        "client_secret",
        th.StringType,
        secret=True,
        title="Client secret",
        description="LinkedIn app client secret. Tokens are fetched from `token_url` and renewed.",
    ),
    th.Property(
        "access_token",
        th.StringType,
        secret=True,
        title="Access token",
        description="A pre-issued access token, used when no client credentials are given.",
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description=(
            "`exportStartAt` of the first export of an instance without a bookmark. "
            "Default: 30 days before now (LinkedIn looks back at most 30 days)."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        title="API base URL",
        description="Base URL of the LinkedIn REST API (the sandbox's URL in tests).",
    ),
    th.Property(
        "token_url",
        th.StringType,
        default=DEFAULT_TOKEN_URL,
        title="Token URL",
        description="OAuth 2.0 token endpoint for the client-credentials flow.",
    ),
    th.Property(
        "linkedin_version",
        th.StringType,
        title="LinkedIn-Version header",
        description=(
            "Optional `LinkedIn-Version: YYYYMM` header, for the versioned `/rest` API. "
            "Unset by default: the Sales Navigator exports are documented under `/v2`."
        ),
    ),
    th.Property(
        "poll_interval",
        th.NumberType(exclusive_minimum=0),
        default=30,
        title="Poll interval (s)",
        description="First wait between job status polls; it grows, with jitter, up to the cap.",
    ),
    th.Property(
        "poll_max_interval",
        th.NumberType(exclusive_minimum=0),
        default=300,
        title="Poll interval cap (s)",
        description="Longest wait between two status polls of a job.",
    ),
    th.Property(
        "job_timeout",
        th.NumberType(exclusive_minimum=0),
        default=10800,
        title="Job timeout (s)",
        description=(
            "A job still unfinished after this many seconds fails its instance; "
            "the bookmark is left untouched and the job is resumed by the next run."
        ),
    ),
    th.Property(
        "job_max_attempts",
        th.IntegerType(minimum=1),
        default=3,
        title="Job attempts",
        description="How many jobs to try per instance when LinkedIn reports `FAILED_*`.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0),
        default=300,
        title="Request timeout (s)",
        description="Timeout of each HTTP request (connect and each read).",
    ),
    th.Property(
        "request_max_retries",
        th.IntegerType(minimum=0),
        default=5,
        title="Request retries",
        description=(
            "Retries of one HTTP request on 5xx, connection errors and 429 (honouring "
            "`Retry-After`). The daily-quota 429 is retried at most twice, then the sync stops."
        ),
    ),
    th.Property(
        "request_retry_delay",
        th.NumberType(exclusive_minimum=0),
        default=1,
        title="First retry delay (s)",
        description=(
            "Wait before the first retry of a failed request or download; each further retry "
            "waits about twice as long (with jitter), up to 60 s. `Retry-After` overrides it."
        ),
    ),
    th.Property(
        "column_types",
        th.ObjectType(additional_properties=th.StringType(allowed_values=list(COLUMN_TYPE_NAMES))),
        default={},
        title="Column types",
        description=(
            "Types of CSV columns, `{column: type}` with type one of string, integer, number, "
            "boolean, timestamp; added to "
            "(or overriding) the built-in typed columns. Undeclared columns are kept as strings "
            "in `extraColumns`."
        ),
    ),
).to_dict()


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
