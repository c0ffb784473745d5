"""TapLinkedInCRM: the settings schema, the streams, and the sync the tap runs itself."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import logging
import re
import sys
import threading
import typing as t
from functools import cached_property

import dotenv
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, MappingError
from singer_sdk.helpers.capabilities import BATCH_CONFIG, PluginCapabilities, TapCapabilities
from singer_sdk.singerlib import Catalog

from tap_linkedin_crm.columns import (
    COLUMN_TYPE_NAMES,
    ColumnType,
    column_types_by_stream,
    column_types_from_schema,
    schema_without_strings,
)
from tap_linkedin_crm.engine.state import normalize_state
from tap_linkedin_crm.engine.stopper import EXIT_INTERRUPTED, Stopper, stop_on_signals
from tap_linkedin_crm.errors import LinkedInCRMError, SyncInterruptedError
from tap_linkedin_crm.output.batch import BatchOutput, BatchSettings
from tap_linkedin_crm.output.handoff import END, HandoffOutput
from tap_linkedin_crm.output.singer import SingerOutput
from tap_linkedin_crm.output.writer import BufferedSingerWriter
from tap_linkedin_crm.settings import (
    DEFAULT_API_URL,
    DEFAULT_TOKEN_URL,
    FAMILY_SETTINGS,
    Settings,
    configured_families,
    environment_config,
    load_settings,
    secret_settings,
)
from tap_linkedin_crm.streams import STREAM_SPECS, ExportStream
from tap_linkedin_crm.sync import run_sync

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import PurePath

    import click
    from singer_sdk.helpers.capabilities import CapabilitiesEnum

LOGGER = logging.getLogger("tap-linkedin-crm")
_CONFIG_KEY = re.compile(r"config\['([^']+)'\]")

#: The settings: the single source of truth. meltano.yml, the README settings table,
#: `.env.example` and `catalog.json` are generated from the tap (`make docs`), and
#: tests/test_settings_sync.py keeps them equal.
CONFIG_SCHEMA: dict[str, t.Any] = th.PropertiesList(
    th.Property(
        "crm_instance_ids",
        th.ArrayType(th.StringType),
        title="CRM instance URNs",
        description=(
            "CRM instances to export, as URNs: `urn:li:crmInstance:(DYNAMICS,<org guid>)` or "
            "`urn:li:crmInstance:(SFDC,<org id>)`. Each one gets its own export job and bookmark. "
            "Needed for the CRM Data Validation streams. From the environment: a JSON array, or "
            "URNs separated by spaces or `;`."
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
        "refresh_token",
        th.StringType,
        secret=True,
        title="Member refresh token",
        description=(
            "LinkedIn member refresh token (scope r_sales_nav_analytics) for the Sales Navigator "
            "analytics exports; get one with `linkedin-crm-auth`. Needs client_id and "
            "client_secret. LinkedIn does not extend it: the tap warns 30 days before it expires."
        ),
    ),
    th.Property(
        "analytics_access_token",
        th.StringType,
        secret=True,
        title="Member access token",
        description=(
            "A pre-issued member access token for the analytics exports, used when there is no "
            "refresh_token (it lasts about 60 days and cannot be renewed by the tap)."
        ),
    ),
    th.Property(
        "contract_ids",
        th.ArrayType(th.StringType),
        title="Sales Navigator contracts",
        description=(
            "Contracts to export analytics of, as `urn:li:contract:<id>`. Default: every contract "
            "the member can see with reporting access. From the environment: a JSON array, or "
            "URNs separated by spaces or `;`."
        ),
    ),
    th.Property(
        "analytics_start_date",
        th.DateTimeType,
        title="Analytics start date",
        description=(
            "Start of the first analytics window of a contract and export type without a "
            "bookmark, from 2000-01-01 on. Default: 90 days before now."
        ),
    ),
    th.Property(
        "analytics_window_days",
        th.IntegerType(minimum=1, maximum=366),
        default=30,
        title="Analytics window (days)",
        description=(
            "Longest window of one analytics export job, in whole UTC days. A window LinkedIn "
            "finds too big is split in two, down to one day."
        ),
    ),
    th.Property(
        "analytics_lag_hours",
        th.NumberType(minimum=0),
        default=24,
        title="Analytics lag (hours)",
        description=(
            "Analytics windows end at the last UTC midnight at least this long before now, so "
            "LinkedIn has the window's data."
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
        "max_jobs_in_flight",
        th.IntegerType(minimum=1),
        default=100,
        title="Jobs in flight",
        description=(
            "Export jobs that may exist at once (created and not yet fully emitted). All jobs are "
            "created at the start of a sync up to this many; the rest as earlier ones finish."
        ),
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
        th.ObjectType(
            additional_properties=th.CustomType(
                {
                    "anyOf": [
                        {"type": "string", "enum": list(COLUMN_TYPE_NAMES)},
                        {
                            "type": "object",
                            "additionalProperties": {
                                "type": "string",
                                "enum": list(COLUMN_TYPE_NAMES),
                            },
                        },
                    ]
                }
            )
        ),
        default={},
        title="Column types",
        description=(
            "Types of CSV columns, `{column: type}` with type one of string, integer, number, "
            "boolean, timestamp; added to (or overriding) the built-in typed columns. A bare "
            "column name applies to crm_data_validation_records; `<stream>.<column>` (e.g. "
            "`sales_seats.socialSellingIndex`), or `{<stream>: {<column>: type}}` (what Meltano "
            "makes of dotted names), to that stream. Undeclared columns are kept as strings in "
            "`extraColumns`."
        ),
    ),
).to_dict()


def with_batch_size(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """`schema` with the SDK's `batch_config` setting, plus the `batch_size` the SDK reads.

    The SDK's schema of `batch_config` lacks `batch_size`, so Meltano would not pass it (or pass
    it as text); declared here, the SDK (which adds only settings a tap lacks) keeps this one.
    """
    batch = copy.deepcopy(BATCH_CONFIG["properties"]["batch_config"])
    batch.setdefault("properties", {})["batch_size"] = {
        "type": ["integer", "null"],
        "minimum": 1,
        "title": "Batch size",
        "description": "Records per batch file (default 10000).",
    }
    schema["properties"]["batch_config"] = batch
    return schema


class TapLinkedInCRM(Tap):
    """Singer tap for LinkedIn Sales Navigator export APIs (CRM Data Validation, Analytics)."""

    name = "tap-linkedin-crm"
    # A copy: the SDK adds its built-in settings (stream_maps, ...) to the tap's schema dict.
    config_jsonschema = with_batch_size(copy.deepcopy(CONFIG_SCHEMA))
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.DISCOVER,
        TapCapabilities.STATE,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        PluginCapabilities.BATCH,
    ]

    #: The SDK's writer in binary, plus blocks of RECORD lines encoded by the Singer output.
    message_writer_class = BufferedSingerWriter

    @override
    def __init__(
        self,
        *,
        config: dict[str, t.Any] | PurePath | str | list[PurePath | str] | None = None,
        catalog: PurePath | str | dict[str, t.Any] | Catalog | None = None,
        state: PurePath | str | dict[str, t.Any] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_writer: BufferedSingerWriter | None = None,
    ) -> None:
        """The SDK's constructor, with settings from the environment typed by the schema.

        Configuration errors never quote the value of a secret setting.

        Raises:
            ConfigValidationError: The configuration is invalid (every problem listed).
        """
        problems: list[str] = []
        if parse_env_config:
            # Typed here (numbers, booleans, lists without splitting URNs at their commas);
            # the environment overrides files, as in the SDK.
            # A `.env` file counts as environment (as in the SDK); real variables win over it.
            dotenv.load_dotenv(dotenv.find_dotenv(usecwd=True), override=False)
            schema = copy.deepcopy(self.config_jsonschema)
            self.append_builtin_config(schema)  # stream_maps, flattening, batch_config, ...
            found, problems = environment_config(schema, _env_prefix(self.name))
            merged = dict(config) if isinstance(config, dict) else {}
            if config is not None and not isinstance(config, dict):
                merged = _read_config_files(config)
            config = {**merged, **found}
        try:
            if problems:
                summary = "Config validation failed"
                raise ConfigValidationError(summary, errors=problems)  # noqa: TRY301
            super().__init__(
                config=config,
                catalog=catalog,
                state=state,
                parse_env_config=False,
                validate_config=validate_config,
                setup_mapper=setup_mapper,
                message_writer=message_writer,
            )
        except ConfigValidationError as exc:
            raise _without_secret_values(exc, secret_settings(CONFIG_SCHEMA)) from None

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """Check the given state (and unwrap Meltano's wrapper) before the SDK merges it.

        Raises:
            InvalidStateError: The state is not one this tap wrote.
        """
        clean, notes = normalize_state(state)
        for note in notes:
            LOGGER.info("%s", note)
        super().load_state(clean)

    @property
    def column_types(self) -> dict[str, dict[str, ColumnType]]:
        """Each rows stream's typed columns, built-in plus `column_types`.

        Bad entries are left out here; they fail the sync (`settings`), not discovery.
        """
        return column_types_by_stream(self.config.get("column_types") or {})

    @cached_property
    def settings(self) -> Settings:
        """The validated settings (checked when first used: at the start of a sync)."""
        return load_settings(self.config, CONFIG_SCHEMA)

    @override
    def discover_streams(self) -> list[ExportStream]:
        """Every stream, declared by its spec."""
        column_types = self.column_types
        return [ExportStream(self, spec, column_types.get(spec.name, {})) for spec in STREAM_SPECS]

    def selected_streams(self) -> list[ExportStream]:
        """The streams the catalog selects, in the SDK's order (by name, not declaration)."""
        return [
            stream
            for stream in self.streams.values()
            if isinstance(stream, ExportStream) and stream.selected
        ]

    # The SDK marks sync_all final; it is the public seam that lets the tap own the whole run
    # (every stream's jobs created at the start, one poll scheduler, one signal policy).
    @override  # type: ignore[misc]
    def sync_all(self) -> None:
        """Run every selected stream's exports; write SCHEMA, RECORD and STATE messages.

        Raises:
            ConfigValidationError: The settings or stream maps are invalid (before any job).
            SyncFailedError: Some partitions failed; the others were synced.
            SyncInterruptedError: SIGTERM/Ctrl-C; the last STATE resumes the sync.
        """
        streams = self.selected_streams()
        _check_something_to_export(self.config, streams)
        settings = _columns_of_the_catalog(self.settings, streams)
        output = self._output(streams)
        stopper = Stopper()
        with stop_on_signals(stopper):
            run_sync(settings, streams, output, t.cast("dict[str, t.Any]", self.state), stopper)
        for stream in streams:
            stream.log_sync_costs()

    def _output(self, streams: list[ExportStream]) -> SingerOutput:
        """RECORD messages, or BATCH files for the rows streams when `batch_config` is set.

        Raises:
            ConfigValidationError: `batch_config` is not usable.
        """
        writer = t.cast("BufferedSingerWriter", self.message_writer)
        batch_config = self.config.get("batch_config")
        if not batch_config:
            return SingerOutput(self, writer)
        try:
            batch = BatchSettings.from_config(batch_config)
        except ValueError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from None
        rows = {stream.name for stream in streams if stream.spec.role == "rows"}
        return BatchOutput(self, writer, batch, rows)

    def records_for(self, stream: ExportStream, limit: int | None) -> Iterator[dict[str, t.Any]]:
        """One stream's records (at most `limit`) from a run that keeps no state (`--test`).

        The run works in a helper thread and hands records over a bounded queue. With a
        `limit` (`--test`), one job at a time: the run stops at the first records, so jobs for
        the other partitions would be created at LinkedIn, counted against its quota, for nothing.
        """
        stopper = Stopper()
        output = HandoffOutput(stream.name, limit, stopper)
        state = copy.deepcopy(dict(self.state))
        errors: list[BaseException] = []
        settings = _columns_of_the_catalog(self.settings, [stream])
        if limit is not None:
            engine = dataclasses.replace(settings.engine, max_jobs_in_flight=1)
            settings = dataclasses.replace(settings, engine=engine)

        def work() -> None:
            try:
                run_sync(settings, [stream], output, state, stopper)
            except SyncInterruptedError:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                errors.append(exc)
            finally:
                output.queue.put(END)

        worker = threading.Thread(target=work, name=f"records-{stream.name}", daemon=True)
        worker.start()
        try:
            while (record := output.queue.get()) is not END:
                yield t.cast("dict[str, t.Any]", record)
        finally:
            stopper.stop()
            worker.join(timeout=5.0)
        if errors:
            raise errors[0]

    @classmethod
    @override
    def cb_config(
        cls,
        ctx: click.Context,
        param: click.Option,
        value: tuple[str, ...],
    ) -> t.Any:  # the SDK's own config input object
        """Read the `--config` files as the SDK does, once each is known to be a JSON object.

        A missing, unreadable or broken file (or one holding something else than an object)
        ends the command with one clear line and exit 1, whatever the mode (`--discover`,
        `--test`, a sync), and without quoting the file: it holds secrets.
        """
        for path in value:
            if path == "ENV":
                continue
            problem = _config_file_problem(path)
            if problem is not None:
                LOGGER.error("%s", problem)
                sys.stderr.flush()
                ctx.exit(1)
        return super().cb_config(ctx, param, value)

    @classmethod
    @override
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        """Run the CLI; known failures end with a clear message and a non-zero exit, no traceback.

        Raises:
            SystemExit: 1 for failed exports or configuration errors, 130 when interrupted.
        """
        with _clean_exit():
            for name in ("state", "catalog"):
                kwargs[name] = _checked_json_file(kwargs.get(name), name)
            super().invoke(*args, **kwargs)

    # Final in the SDK as sync_all is; the seam where `--test` (not `--test=schema`) starts.
    @override  # type: ignore[misc]
    def run_connection_test(self) -> bool:
        """`--test`: every stream, one record each; a config that sets up no family fails it.

        Raises:
            ConfigValidationError: Neither export family is configured (nothing to test).
        """
        streams = [s for s in self.streams.values() if isinstance(s, ExportStream)]
        _check_something_to_export(self.config, streams)
        return super().run_connection_test()

    @classmethod
    @override
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """`--test`, the connection test: its failure is one clear line and exit 1.

        Raises:
            SystemExit: 1 when the test failed, 130 when interrupted.
        """
        with _clean_exit():
            super().cb_test(ctx, param, value)


def _check_something_to_export(config: Mapping[str, t.Any], streams: list[ExportStream]) -> None:
    """A run whose selected streams all lack their settings is a mistake, not a quiet success.

    Raises:
        ConfigValidationError: Streams are selected, but none of their families is configured.
    """
    families = configured_families(config)
    if not streams or any(stream.spec.kind in families for stream in streams):
        return
    # Name only what the selected streams need: the other family may well be configured.
    needed = [
        f"{' or '.join(FAMILY_SETTINGS[kind])} ({label})"
        for kind, label in _FAMILY_LABELS.items()
        if any(s.spec.kind == kind for s in streams)
    ]
    msg = (
        f"Nothing to export: the selected streams need {' or '.join(needed)}, and it is not "
        "set. Set it, or select the streams of the export family you configured."
    )
    raise ConfigValidationError(msg, errors=[msg])


#: Each export family's name in the "Nothing to export" error (its settings: `FAMILY_SETTINGS`).
_FAMILY_LABELS = {
    "crm_data_validation": "CRM Data Validation",
    "sales_analytics": "Sales Navigator analytics",
}


def _columns_of_the_catalog(settings: Settings, streams: list[ExportStream]) -> Settings:
    """Settings whose typed columns are those of the catalog's schemas, as the records must be.

    A catalog discovered before `column_types` changed (or edited: Meltano's `schema` extra)
    declares other columns or types than the settings: the SCHEMA messages carry the catalog's,
    so the CSVs are decoded by it too, with a warning, and nothing disagrees with the schema.
    """
    column_types = dict(settings.column_types)
    for stream in streams:
        if stream.spec.role != "rows":
            continue
        wanted = settings.column_types.get(stream.name, {})
        declared = column_types_from_schema(stream.name, stream.effective_schema)
        untyped = schema_without_strings(stream.name, stream.effective_schema)
        if untyped:
            LOGGER.warning(
                "The catalog's schema of %s gives %s a type no CSV column can have (a CSV "
                "column is a string, integer, number, boolean or date-time): their values are "
                "strings, which that schema does not allow. Correct the catalog (or Meltano's "
                "schema extra).",
                stream.name,
                ", ".join(untyped),
            )
        if declared == wanted:
            continue
        differing = sorted(
            name for name in set(wanted) | set(declared) if wanted.get(name) != declared.get(name)
        )
        LOGGER.warning(
            "The catalog's schema of %s does not match the settings (column_types) for %s: its "
            "records follow the catalog. Run --discover again to use the settings.",
            stream.name,
            ", ".join(differing),
        )
        column_types[stream.name] = declared
    return dataclasses.replace(settings, column_types=column_types)


@contextlib.contextmanager
def _clean_exit() -> Iterator[None]:
    """Known failures end the command with a clear message and a non-zero exit, no traceback.

    Raises:
        SystemExit: 1 for failed exports or configuration errors, 130 when interrupted.
    """
    try:
        yield
    except SyncInterruptedError:
        LOGGER.error(  # noqa: TRY400 - the message is the whole story
            "Sync interrupted; the last STATE message resumes it where it stopped."
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    except ConfigValidationError as exc:
        LOGGER.error("%s", config_error_text(exc))  # noqa: TRY400 - the message says all
        sys.stderr.flush()
        raise SystemExit(1) from None
    except MappingError as exc:
        # Stream maps carry no secrets: the whole message, checked before any export job.
        LOGGER.error("Invalid stream_maps: %s", exc)  # noqa: TRY400 - message says all
        sys.stderr.flush()
        raise SystemExit(1) from None
    except LinkedInCRMError as exc:
        LOGGER.error("%s", exc)  # noqa: TRY400 - the message is the whole story
        sys.stderr.flush()
        raise SystemExit(1) from None


def config_error_text(error: ConfigValidationError) -> str:
    """The error's message and each of its problems the message does not already say."""
    details = [e for e in error.errors if e not in str(error)]
    return "; ".join([str(error), *details])


def _env_prefix(name: str) -> str:
    return f"{name.upper().replace('-', '_')}_"


def _read_config_files(config: PurePath | str | list[PurePath | str]) -> dict[str, t.Any]:
    paths = config if isinstance(config, list) else [config]
    merged: dict[str, t.Any] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - str or PurePath
            merged |= json.load(handle)
    return merged


def _config_file_problem(path: str) -> str | None:
    """What keeps a `--config` file from being used (None: nothing); never its content."""
    try:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - a CLI path string
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return f"Cannot read the --config file {path}: {reason}."
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        return (
            f"The --config file {path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})."
        )
    if not isinstance(parsed, dict):
        kind = "list" if isinstance(parsed, list) else "string" if isinstance(parsed, str) else ""
        kind = kind or "number, boolean or null"
        return f"The --config file {path} must hold a JSON object of settings, not a {kind}."
    return None


def _checked_json_file(handle: t.IO[str] | None, name: str) -> t.IO[str] | None:
    """Read a `--state`/`--catalog` file once, so a broken one gives one clear line.

    Raises:
        LinkedInCRMError: The file is not JSON.
        InvalidStateError: The state is JSON but not a state (the SDK would drop `[]` silently).
    """
    if handle is None:
        return None
    text = handle.read()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"The --{name} file is not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); pass the file the tap's last STATE message (or --discover) gave."
        )
        raise LinkedInCRMError(msg) from None
    if name == "state":
        normalize_state(parsed)  # checked again (and its notes logged) when the tap loads it
    if name == "catalog":
        try:
            Catalog.from_dict(parsed)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            msg = (
                f"The --catalog file is not a Singer catalog ({type(exc).__name__}: {exc}); pass "
                "the output of --discover, with streams selected in its metadata."
            )
            raise LinkedInCRMError(msg) from None
    return io.StringIO(text)


def _without_secret_values(
    error: ConfigValidationError, secrets: frozenset[str]
) -> ConfigValidationError:
    """The same error, with any message about a secret setting replaced by one without its value."""
    cleaned = []
    for message in error.errors:
        names = set(_CONFIG_KEY.findall(message)) & secrets
        if names or any(name in message for name in secrets):
            name = next(iter(names or [n for n in secrets if n in message]))
            cleaned.append(
                f"{name}: invalid value (the value of this secret setting is not shown); "
                "it must be a string."
            )
        else:
            cleaned.append(message)
    return ConfigValidationError(str(error), errors=cleaned)
