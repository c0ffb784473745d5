"""Deterministic, streaming generation of the CSV files a sandbox export job serves."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import itertools
import random
import threading
import typing as t
from dataclasses import dataclass

from tap_linkedin_crm.sandbox.byte_streams import coalesce, gzip_stream

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# LinkedIn does not publish the CSV columns: this set is an ASSUMPTION, configurable per scenario.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "crmRecordId",
    "recordType",
    "firstName",
    "lastName",
    "email",
    "title",
    "crmCompanyName",
    "linkedInCompanyName",
    "linkedInProfileUrl",
    "notAtCompany",
    "flaggedAt",
    "lastSyncedAt",
)
DRIFT_EXTRA_COLUMN = "territory"
DRIFT_MISSING_COLUMN = "title"

_JOB_COLUMNS = frozenset({"crmRecordId", "flaggedAt", "lastSyncedAt"})
BOM = "\ufeff"
CRLF = "\r\n"
POOL_SIZE = 4099  # prime; row i of a file uses pool entry (offset + i) % POOL_SIZE
BLOCK_ROWS = 4096  # rows rendered per block; must stay below POOL_SIZE
CHUNK_BYTES = 256 * 1024

_FIRST = (
    "Anna", "José", "Zoë", "Łukasz", "Søren", "Mohammed", "Ngozi", "Chloé", "Björn", "Priya",
    "Wei", "Siobhán", "Ömer", "Hana", "Juan Carlos", "Olga", "Kwame", "Aoife", "Dmitri",
    "Mary-Kate", "李", "さくら", "Иван", "Renée", "François",
)  # fmt: skip
_LAST = (
    "Müller", "García", "O'Neil", "Nguyễn", "Smith, Jr.", "Kowalski", "王", "Dubois", "Ivanova",
    "Okafor", "Jensen", "Rossi", "Fernández", "Öztürk", "Tanaka", "Brown", "de la Cruz", "Ó Briain",
    "Petrov", "Johansson", "van der Berg", "Kim", "Silva", "Hernández-López", "田中",
)  # fmt: skip
_TITLES = (
    "VP Sales", "Head of Sales\nEMEA", "Director, Procurement", "CTO", "", "Account Executive",
    '"Chief" Evangelist', "Chief Financial Officer", "Software Engineer", "Ingénieur commercial",
    "Marketing Manager, DACH", "Geschäftsführer", "営業部長", "Product Owner", "Senior Buyer",
    "Head of IT\r\nOperations", "Sales Development Rep", "COO", "Partner", "Office Manager",
)  # fmt: skip
_COMPANIES = (
    "Contoso Ltd.", "Fabrikam, Inc.", "Northwind Traders", "Adventure Works", "Tailspin Toys",
    "Wide World Importers", "Société Générale de Test", "Ñandú S.A.", "株式会社サンプル",
    "Müller & Söhne GmbH", 'The "Best" Company', "Litware, Inc.", "Proseware", "Woodgrove Bank",
    "Alpine Ski House", "Coho Winery", "Lucerne Publishing", "Margie's Travel", "Trey Research",
    "Blue Yonder Airlines",
)  # fmt: skip
_TERRITORIES = ("EMEA", "NA", "APAC", "LATAM", "")
_ASCII = str.maketrans(
    "éèçöüäøåłñóíáúšžšõ",
    "eecouaoalnoiauszso",
)


def quote(value: str) -> str:
    """Quote one CSV field the way Excel and Python's csv module do (only when needed)."""
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _base36(number: int, width: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for _ in range(width):
        number, rem = divmod(number, 36)
        out.append(digits[rem])
    return "".join(reversed(out))


@dataclass(frozen=True, slots=True)
class FilePlan:
    """One file of an export job: its index, row count and header."""

    index: int
    rows: int
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """Everything that determines the bytes of an export job's files."""

    seed: int
    instance: str
    job_id: int
    export_start_at: int
    export_end_at: int
    files: tuple[FilePlan, ...]
    gzip: bool = False
    bom: bool = True
    nul_bytes: bool = True
    long_field_chars: int = 10_000

    @property
    def crm_key(self) -> str:
        """The CRM key of the instance URN, e.g. ``DYNAMICS`` or ``SFDC``."""
        inner = self.instance.rpartition(":(")[2]
        return inner.split(",", 1)[0]


def drifted_columns(base: Sequence[str], file_index: int) -> tuple[str, ...]:
    """Return the header of file ``file_index`` when header drift is on.

    Files cycle through: unchanged, one column added, one column missing, columns reordered.
    """
    cols = list(base)
    variant = file_index % 4
    if variant == 1:
        cols.insert(min(3, len(cols)), DRIFT_EXTRA_COLUMN)
    elif variant == 2 and len(cols) > 1:  # noqa: PLR2004
        victim = DRIFT_MISSING_COLUMN if DRIFT_MISSING_COLUMN in cols else cols[-1]
        cols.remove(victim)
    elif variant == 3:  # noqa: PLR2004
        cols.reverse()
    return tuple(cols)


def plan_files(
    rows: int,
    files: int,
    columns: Sequence[str],
    *,
    header_drift: bool = False,
    file_columns: Sequence[Sequence[str]] | None = None,
) -> tuple[FilePlan, ...]:
    """Spread ``rows`` over ``files`` files (at least one) and pick each file's header."""
    count = max(1, files)
    base, rem = divmod(max(0, rows), count)
    plans = []
    for index in range(count):
        if file_columns:
            cols = tuple(file_columns[index % len(file_columns)])
        elif header_drift:
            cols = drifted_columns(columns, index)
        else:
            cols = tuple(columns)
        plans.append(FilePlan(index=index, rows=base + (1 if index < rem else 0), columns=cols))
    return tuple(plans)


@dataclass(frozen=True, slots=True)
class BasePools:
    """Window-independent, pre-quoted column values of one instance's record pool."""

    columns: dict[str, list[str]]
    flag_fracs: list[float]
    synced_secs: list[int]


def build_base_pools(seed: int, instance: str, *, nul_bytes: bool, long_chars: int) -> BasePools:
    """Build the record pool of an instance: ``POOL_SIZE`` people with awkward values mixed in."""
    rng = random.Random(_stable_int(seed, instance, "pool"))  # noqa: S311
    raw: dict[str, list[str]] = {
        name: [] for name in (*DEFAULT_COLUMNS, DRIFT_EXTRA_COLUMN) if name not in _JOB_COLUMNS
    }
    fracs: list[float] = []
    secs: list[int] = []
    for p in range(POOL_SIZE):
        first = rng.choice(_FIRST)
        last = rng.choice(_LAST)
        company = rng.choice(_COMPANIES)
        other = rng.choice(_COMPANIES[:-1])
        if other == company:
            other = _COMPANIES[-1]
        title = rng.choice(_TITLES)
        if nul_bytes and p % 211 == 17:  # noqa: PLR2004
            title = f"{title}\x00(legacy import)"
        if long_chars > 0 and p % 997 == 41:  # noqa: PLR2004
            title = ("Very long title " * (long_chars // 16 + 1))[:long_chars]
        slug = f"{first}-{last}".lower().translate(_ASCII)
        slug = "".join(c for c in slug if c.isascii() and (c.isalnum() or c == "-")) or "member"
        domain = "".join(c for c in company.lower() if c.isascii() and c.isalnum()) or "example"
        raw["recordType"].append("LEAD" if rng.random() < 0.3 else "CONTACT")  # noqa: PLR2004
        raw["firstName"].append(first)
        raw["lastName"].append("" if rng.random() < 0.03 else last)  # noqa: PLR2004
        raw["email"].append("" if rng.random() < 0.1 else f"{slug}.{p}@{domain}.example")  # noqa: PLR2004
        raw["title"].append(title)
        raw["crmCompanyName"].append(company)
        raw["linkedInCompanyName"].append("" if rng.random() < 0.08 else other)  # noqa: PLR2004
        raw["linkedInProfileUrl"].append(f"https://www.linkedin.com/in/{slug}-{p:x}")
        raw["notAtCompany"].append("false" if rng.random() < 0.05 else "true")  # noqa: PLR2004
        raw[DRIFT_EXTRA_COLUMN].append(rng.choice(_TERRITORIES))
        fracs.append(rng.random())
        secs.append(rng.randrange(0, 3 * 86400))
    columns = {name: [quote(v) for v in values] for name, values in raw.items()}
    return BasePools(columns=columns, flag_fracs=fracs, synced_secs=secs)


class BaseCache:
    """A thread-safe cache of :class:`BasePools`, one per (seed, instance, value options)."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._pools: dict[tuple[int, str, bool, int], BasePools] = {}

    def get(self, plan: ExportPlan) -> BasePools:
        """Return the pools for the plan's instance, building them on first use."""
        key = (plan.seed, plan.instance, plan.nul_bytes, plan.long_field_chars)
        with self._lock:
            pools = self._pools.get(key)
            if pools is None:
                pools = build_base_pools(
                    plan.seed,
                    plan.instance,
                    nul_bytes=plan.nul_bytes,
                    long_chars=plan.long_field_chars,
                )
                self._pools[key] = pools
            return pools


class ExportData:
    """Renders the files of one export plan, deterministically and as a stream.

    Per-record values come from a pool of ``POOL_SIZE`` pre-quoted entries; row ``i`` of a file
    uses entry ``(offset + i) % POOL_SIZE`` with a per-file offset, plus a unique ``crmRecordId``
    built from the job, the file and ``i``. Rendering is a join of pre-built pieces, so it runs at
    millions of rows per second and never holds more than one block of rows.
    """

    def __init__(self, plan: ExportPlan, base_cache: BaseCache | None = None) -> None:
        """Prepare to render ``plan``; the value pools are built lazily on first use.

        Args:
            plan: The export job's files.
            base_cache: Shared cache of the window-independent pools, so that many jobs of one
                instance build them once; ``None`` gives this object its own.
        """
        self.plan = plan
        self._lock = threading.Lock()
        self._pools: dict[str, list[str]] | None = None
        self._base_cache = base_cache if base_cache is not None else BaseCache()

    def _build_pools(self) -> dict[str, list[str]]:
        plan = self.plan
        base = self._base_cache.get(plan)
        window = max(1, plan.export_end_at - plan.export_start_at)
        end = dt.datetime.fromtimestamp(plan.export_end_at // 1000, tz=dt.UTC)
        pools = dict(base.columns)
        pools["flaggedAt"] = [str(plan.export_start_at + int(f * window)) for f in base.flag_fracs]
        pools["lastSyncedAt"] = [
            (end - dt.timedelta(seconds=secs)).strftime("%Y-%m-%d %H:%M:%S")
            for secs in base.synced_secs
        ]
        return pools

    def _pool(self, column: str) -> list[str]:
        with self._lock:
            if self._pools is None:
                self._pools = self._build_pools()
            pools = self._pools
            if column not in pools:
                pools[column] = [quote(f"{column}-{p % 97}") for p in range(POOL_SIZE)]
            return pools[column]

    # -- rendering ---------------------------------------------------------------------------

    def header_text(self, file_index: int, line_terminator: str = CRLF) -> str:
        """Return the header line of a file, with the BOM if the plan has one."""
        cols = self.plan.files[file_index].columns
        line = ",".join(quote(c) for c in cols) + line_terminator
        return BOM + line if self.plan.bom else line

    def _id_parts(self, file_index: int) -> tuple[list[str], str]:
        """Return per-pool-entry id prefixes and the format spec of the row number."""
        plan = self.plan
        if plan.crm_key == "DYNAMICS":
            head = _stable_int(plan.seed, plan.instance, "guid") & 0xFFFFFFFF
            prefix = f"{head:08x}-{plan.job_id & 0xFFFF:04x}-4{file_index & 0xFFF:03x}-a000-"
            return [prefix] * POOL_SIZE, "012x"
        tag = _base36(plan.job_id * 1024 + file_index, 6)
        by_type = {"CONTACT": f"003{tag}", "LEAD": f"00Q{tag}"}
        types = self._pool("recordType")
        return [by_type.get(v, f"001{tag}") for v in types], "09d"

    def iter_text_blocks(self, file_index: int, line_terminator: str = CRLF) -> Iterator[str]:
        """Yield the data rows of a file as text blocks of whole CSV records (no header).

        Args:
            file_index: Which file.
            line_terminator: What ends each record (quoted line breaks inside values stay).
        """
        plan = self.plan
        fplan = plan.files[file_index]
        cols = fplan.columns
        offset = _stable_int(plan.seed, plan.instance, plan.job_id, file_index) % POOL_SIZE
        if "crmRecordId" in cols:
            pos = cols.index("crmRecordId")
            left_cols, right_cols = cols[:pos], cols[pos + 1 :]
        else:
            left_cols, right_cols = cols, ()
        left_pools = [self._pool(c) for c in left_cols]
        right_pools = [self._pool(c) for c in right_cols]
        lefts = [",".join(vals) + "," if vals else "" for vals in zip(*left_pools, strict=True)]
        if not left_cols:
            lefts = [""] * POOL_SIZE
        end = line_terminator
        rights = ["," + ",".join(vals) + end for vals in zip(*right_pools, strict=True)]
        if not right_cols:
            rights = [end] * POOL_SIZE
        if "crmRecordId" not in cols:
            whole = [lft[:-1] + end for lft in lefts]
            whole2 = whole + whole
            for start in range(0, fplan.rows, BLOCK_ROWS):
                n = min(BLOCK_ROWS, fplan.rows - start)
                s = (offset + start) % POOL_SIZE
                yield "".join(whole2[s : s + n])
            return
        prefixes, spec = self._id_parts(file_index)
        lefts = [lft + pre for lft, pre in zip(lefts, prefixes, strict=True)]
        lefts2 = lefts + lefts
        rights2 = rights + rights
        for start in range(0, fplan.rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, fplan.rows - start)
            s = (offset + start) % POOL_SIZE
            ids = range(start, start + n)
            if spec == "012x":
                rows = [
                    f"{a}{i:012x}{b}"
                    for a, i, b in zip(lefts2[s : s + n], ids, rights2[s : s + n], strict=True)
                ]
            else:
                rows = [
                    f"{a}{i:09d}{b}"
                    for a, i, b in zip(lefts2[s : s + n], ids, rights2[s : s + n], strict=True)
                ]
            yield "".join(rows)

    def iter_raw_chunks(
        self, file_index: int, chunk_bytes: int = CHUNK_BYTES, line_terminator: str = CRLF
    ) -> Iterator[bytes]:
        """Yield the uncompressed bytes of a file in chunks of roughly ``chunk_bytes``."""
        header = self.header_text(file_index, line_terminator)
        blocks = self.iter_text_blocks(file_index, line_terminator)
        pieces = itertools.chain([header], blocks)
        yield from coalesce((text.encode("utf-8") for text in pieces), chunk_bytes)

    def iter_chunks(self, file_index: int, *, gzip: bool | None = None) -> Iterator[bytes]:
        """Yield the bytes of a file as served: plain CSV, or a gzip stream if the plan says so."""
        use_gzip = self.plan.gzip if gzip is None else gzip
        raw = self.iter_raw_chunks(file_index)
        return gzip_stream(raw) if use_gzip else raw

    # -- the file source a download serves ------------------------------------------------------

    @property
    def gzip(self) -> bool:
        """Whether the files are served as ``.csv.gz``."""
        return self.plan.gzip

    def file_count(self) -> int:
        """Number of files of the job."""
        return len(self.plan.files)

    def file_rows(self, file_index: int) -> int:
        """Number of data rows of a file."""
        return self.plan.files[file_index].rows

    def file_name(self, file_index: int, *, gzip: bool) -> str:
        """The ``Content-Disposition`` file name of a file."""
        suffix = ".csv.gz" if gzip else ".csv"
        return f"crm-data-validation-{self.plan.job_id}-{file_index}{suffix}"

    def raw_chunks(self, file_index: int, line_terminator: str = CRLF) -> Iterator[bytes]:
        """Yield the uncompressed bytes of a file."""
        return self.iter_raw_chunks(file_index, line_terminator=line_terminator)

    def header_size(self, file_index: int, line_terminator: str = CRLF) -> int:
        """Bytes before the first data record (BOM and header line)."""
        return len(self.header_text(file_index, line_terminator).encode("utf-8"))

    # -- rows ------------------------------------------------------------------------------------

    def iter_rows(self, file_index: int) -> Iterator[dict[str, str]]:
        """Yield a file's data rows as header-keyed dicts of the raw CSV string values."""
        cols = self.plan.files[file_index].columns
        for block in self.iter_text_blocks(file_index):
            for record in csv.reader(io.StringIO(block, newline="")):
                yield dict(zip(cols, record, strict=True))

    def iter_all_rows(self) -> Iterator[dict[str, str]]:
        """Yield the data rows of every file of the job, in file order."""
        for fplan in self.plan.files:
            yield from self.iter_rows(fplan.index)
