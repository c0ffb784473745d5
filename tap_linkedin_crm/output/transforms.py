"""Stream maps, compiled: the records the SDK's maps emit, built by one generated function each.

The SDK emits a record through `Stream._generate_record_messages`: it pops deselected properties,
conforms types, then, per stream map, evaluates every expression with simpleeval and flattens;
with the message and its encoding that is 50-70 us per record. Our rows are already typed to the
schema, and a map is a handful of strings known before the first row, so each map is compiled
into one Python function that builds the output record in one go: a dict display (pass-through
fields, expressions, flattening folded in), or a copy of the row with a few keys changed.

Exactness. Names resolve as in `CustomStreamMap._eval`: the map's names (`_`, `record`,
`config`, `__stream_name__`, `__original_stream_name__`, `self`) before record properties,
those before the evaluator's functions, and a called name among the functions only; operators
are simpleeval's own functions wherever those differ from Python's (`+`, `*`, `**` and shifts
keep their size limits); calls go to the very function objects the evaluator holds; flattening
keys and JSON come from the map's own `flatten_record` (probed per key) and `serialize_json`.
Whenever a compiled function raises, the row goes to the SDK's `StreamMap.transform`, so errors
are the SDK's own (and were there none, its value is returned). A map that uses anything outside
the compiled subset (attributes of per-row values such as `email.lower()`, comprehensions,
f-strings, `fake`, ...) runs the SDK's `StreamMap.transform` for every row (`compiled` False).

Rows must be "complete": exactly the stream schema's top-level properties, in schema order, each
value of its schema type (strings, finite floats, dicts for objects, None). The record returned
may be the row itself or share its nested values: treat rows and records as read-only.
"""

from __future__ import annotations

import ast
import enum
import fnmatch
import json
import logging
import operator
import types
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass

import simpleeval  # the SDK's expression evaluator (mypy: no stubs, see pyproject)
from singer_sdk.exceptions import MapExpressionError
from singer_sdk.mapper import (
    MAPPER_ALIAS_OPTION,
    MAPPER_ELSE_OPTION,
    MAPPER_FILTER_OPTION,
    MAPPER_KEY_PROPERTIES_OPTION,
    MAPPER_SOURCE_OPTION,
    NULL_STRING,
    CustomStreamMap,
    RemoveRecordTransform,
    SameRecordTransform,
    md5,
    sha256,
)
from singer_sdk.singerlib.json import serialize_json

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from singer_sdk import Stream
    from singer_sdk.mapper import StreamMap
    from singer_sdk.singerlib import SelectionMask

LOGGER = logging.getLogger("tap_linkedin_crm.output.transforms")

Row: t.TypeAlias = dict[str, t.Any]
Transform: t.TypeAlias = "Callable[[Row], Row | None]"

#: Names a stream map expression sees besides the record's properties (see `CustomStreamMap`).
_MAP_NAMES = ("_", "record", "config", "__stream_name__", "__original_stream_name__", "self")

#: Python syntax equal to simpleeval's default operator function, with the `operator` function
#: it must be (None: simpleeval's own lambda, e.g. `In` is `lambda x, y: op.contains(y, x)`).
#: Operators missing here (`+`, `*`, `**`, `<<`, `>>`) call simpleeval's function.
_NATIVE_OPERATORS: dict[type[ast.AST], tuple[Callable[..., t.Any] | None, str]] = {
    ast.Sub: (operator.sub, "-"),
    ast.Div: (operator.truediv, "/"),
    ast.FloorDiv: (operator.floordiv, "//"),
    ast.Mod: (operator.mod, "%"),
    ast.BitXor: (operator.xor, "^"),
    ast.BitOr: (operator.or_, "|"),
    ast.BitAnd: (operator.and_, "&"),
    ast.Eq: (operator.eq, "=="),
    ast.NotEq: (operator.ne, "!="),
    ast.Gt: (operator.gt, ">"),
    ast.Lt: (operator.lt, "<"),
    ast.GtE: (operator.ge, ">="),
    ast.LtE: (operator.le, "<="),
    ast.In: (None, "in"),
    ast.NotIn: (None, "not in"),
    ast.Is: (None, "is"),
    ast.IsNot: (None, "is not"),
    ast.Not: (operator.not_, "not "),
    ast.USub: (operator.neg, "-"),
    ast.UAdd: (operator.pos, "+"),
    ast.Invert: (operator.invert, "~"),
}
#: Functions whose result is never a dict or a list (flattening leaves such values alone).
_SCALAR_FUNCTIONS: tuple[object, ...] = (str, int, float, bool, md5, sha256, json.dumps)
#: Parsed nodes that bind names of their own; name checks skip expressions that hold one.
_SCOPES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)
#: Largest int constant written as a literal into generated code (larger ones are bound).
_LITERAL_INT_LIMIT = 10**15
#: The types flattening turns into JSON strings (`_should_jsondump_value`).
_CONTAINERS = (dict, list)


@dataclass(frozen=True, slots=True)
class MappedOutput:
    """One output stream of a source stream: a stream map that emits records.

    `schema` and `key_properties` are what the SDK's SCHEMA message for `alias` holds; for a row,
    `transform` gives the record the SDK's RECORD message for `alias` holds, or None when the
    map filters the row out. The record may be the row itself or share its nested values.
    """

    alias: str
    schema: dict[str, t.Any]
    key_properties: list[str] | None
    transform: Transform
    compiled: bool  # False: `transform` runs the SDK's `StreamMap.transform` on each row


def mapped_outputs(
    stream: Stream, stream_maps_config: Mapping[str, t.Any] | None, *, compile_maps: bool = True
) -> list[MappedOutput]:
    """The outputs of `stream`: one per stream map, in the SDK's order, except removals.

    Args:
        stream: A stream whose tap has set up its mapper (`stream.stream_maps` is final).
        stream_maps_config: The tap config's `stream_maps` (the maps' definitions).
        compile_maps: False to run every map through the SDK's `StreamMap.transform` (the names
            are still checked).

    Returns:
        What the SDK emits for the stream, map by map (no entry for `RemoveRecordTransform`).

    Raises:
        MapExpressionError: An expression names something it can never see: an unknown name or
            function, or a property deselected in the catalog.
    """
    shape = _RecordShape.of(stream)
    maps = stream.stream_maps
    entries = _config_entries(stream.name, stream_maps_config or {})
    aligned = _aligned(entries, maps)
    if not aligned:
        LOGGER.warning(
            "The stream maps of stream '%s' do not match the stream_maps config as the SDK "
            "reads it: they run through the SDK's transform (correct, slower).",
            stream.name,
        )
    outputs = []
    for index, stream_map in enumerate(maps):
        if isinstance(stream_map, RemoveRecordTransform):
            continue  # the SDK emits neither SCHEMA nor RECORD for it
        fallback = _sdk_transform(shape, stream_map)
        transform: Transform | None = None
        plan = _plan(entries[index].definition) if aligned else None
        if plan is not None:
            context = _MapContext(shape, stream_map)
            context.check_names(plan)
            if compile_maps and not shape.nested_deselection:
                transform = _compile_map(context, plan, fallback)
        if compile_maps and aligned and transform is None:
            LOGGER.info(
                "Stream map '%s' of stream '%s' uses expressions the tap does not compile (or "
                "the catalog deselects parts of an object): it runs through the SDK's "
                "transform (correct, slower).",
                stream_map.stream_alias,
                stream.name,
            )
        key_properties = stream_map.transformed_key_properties
        outputs.append(
            MappedOutput(
                alias=stream_map.stream_alias,
                schema=stream_map.transformed_schema,
                key_properties=None if key_properties is None else list(key_properties),
                transform=fallback if transform is None else transform,
                compiled=transform is not None,
            )
        )
    return outputs


# --- The record a stream map sees ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RecordShape:
    """The record the SDK hands its stream maps: the row without deselected properties.

    Read from the effective schema (the catalog's): the records follow it (see the tap).
    """

    stream_name: str
    properties: tuple[str, ...]  # the schema's, in order
    selected: tuple[str, ...]
    selected_set: frozenset[str]
    deselected: frozenset[str]
    scalar: frozenset[str]  # selected properties whose type rules out objects and arrays
    mask: SelectionMask
    nested_deselection: bool  # the catalog deselects something inside an object property

    @classmethod
    def of(cls, stream: Stream) -> _RecordShape:
        """Read the stream's schema and selection."""
        schemas: dict[str, t.Any] = stream.effective_schema.get("properties", {})
        mask = stream.mask
        properties = tuple(schemas)
        selected = tuple(name for name in properties if mask["properties", name])
        top = {("properties", name) for name in selected}
        nested = any(len(crumb) > 2 and crumb[:2] in top and not mask[crumb] for crumb in mask)  # noqa: PLR2004
        return cls(
            stream_name=stream.name,
            properties=properties,
            selected=selected,
            selected_set=frozenset(selected),
            deselected=frozenset(properties) - frozenset(selected),
            scalar=frozenset(name for name in selected if _never_container(schemas[name])),
            mask=mask,
            nested_deselection=nested,
        )

    @property
    def complete(self) -> bool:
        """True when the record is the row: nothing is deselected."""
        return not self.deselected and not self.nested_deselection

    def record(self, row: Row) -> Row:
        """The record for `row`, as the SDK's `pop_deselected_record_properties` leaves it."""
        record = {name: row[name] for name in self.selected}
        if self.nested_deselection:
            for name in self.selected:
                value = record[name]
                if isinstance(value, dict):
                    record[name] = _selected_part(value, self.mask, ("properties", name))
        return record


def _selected_part(value: Row, mask: SelectionMask, breadcrumb: tuple[str, ...]) -> Row:
    """A copy of an object value without its deselected parts (at any depth)."""
    result = {}
    for key, item in value.items():
        crumb = (*breadcrumb, "properties", key)
        if mask[crumb]:
            result[key] = _selected_part(item, mask, crumb) if isinstance(item, dict) else item
    return result


def _never_container(property_schema: Mapping[str, t.Any]) -> bool:
    """True if the schema's type rules out objects and arrays (so a typed value is neither)."""
    types_ = property_schema.get("type")
    if isinstance(types_, str):
        types_ = [types_]
    return isinstance(types_, list) and "object" not in types_ and "array" not in types_


def _sdk_transform(shape: _RecordShape, stream_map: StreamMap) -> Transform:
    """The SDK's own transform of a row (exact by definition; slow)."""

    def transform(row: Row) -> Row | None:
        return stream_map.transform(shape.record(row))

    return transform


# --- Which config entry made which StreamMap ----------------------------------------------------


class _Default(enum.Enum):
    """The mapper `PluginMapper` puts first when no config entry is the stream's primary map."""

    MAPPER = enum.auto()


@dataclass(frozen=True, slots=True)
class _ConfigEntry:
    definition: object  # a dict (custom map), None or "__NULL__" (removal), or _Default.MAPPER
    alias: str | None  # None: set by an `__alias__` expression (taken from the StreamMap)


def _config_entries(stream_name: str, config: Mapping[str, t.Any]) -> list[_ConfigEntry]:
    """The config entries of a stream in `stream.stream_maps` order.

    As `PluginMapper.register_raw_stream_schema` matches them: an entry named after the stream
    (exactly, or as an fnmatch pattern) replaces the first map; an entry with `__source__`
    naming the stream adds a map.
    """
    entries = [_ConfigEntry(_Default.MAPPER, stream_name)]
    for key, value in config.items():
        if key == MAPPER_ELSE_OPTION:  # PluginMapper consumes it (the default mapper's type)
            continue
        definition = dict(value) if isinstance(value, Mapping) else value
        source: object = key
        alias: str | None = key
        primary = True
        if isinstance(definition, dict):
            if MAPPER_SOURCE_OPTION in definition:
                source = definition.pop(MAPPER_SOURCE_OPTION)
                primary = False
            elif MAPPER_ALIAS_OPTION in definition:
                definition.pop(MAPPER_ALIAS_OPTION)
                alias = None
        if stream_name != source:
            if not (isinstance(source, str) and fnmatch.fnmatch(stream_name, source)):
                continue
            if alias == source:
                alias = stream_name
        entry = _ConfigEntry(definition, alias)
        if primary:
            entries[0] = entry
        else:
            entries.append(entry)
    return entries


def _aligned(entries: list[_ConfigEntry], maps: list[StreamMap]) -> bool:
    """True if each map is the one its entry would make (else every map runs the SDK's way)."""
    if len(entries) != len(maps):
        return False
    for entry, stream_map in zip(entries, maps, strict=True):
        if entry.alias is not None and stream_map.stream_alias != entry.alias:
            return False
        expected: tuple[type[StreamMap], ...]
        if entry.definition is _Default.MAPPER:
            expected = (SameRecordTransform, RemoveRecordTransform)
        elif isinstance(entry.definition, dict):
            expected = (CustomStreamMap,)
        elif entry.definition is None or entry.definition == NULL_STRING:
            expected = (RemoveRecordTransform,)
        else:
            return False
        if type(stream_map) not in expected:
            return False
    return True


@dataclass(frozen=True, slots=True)
class _MapPlan:
    """A map definition, read as `CustomStreamMap._init_functions_and_schema` reads it."""

    filter_rule: str | None
    include_by_default: bool  # False with `__else__: null`: key properties and mapped ones only
    properties: tuple[tuple[str, str | None], ...]  # in config order; None removes the property


def _plan(definition: object) -> _MapPlan | None:
    """The plan of a map definition; None if the SDK would not have accepted it."""
    if definition is _Default.MAPPER:
        return _MapPlan(filter_rule=None, include_by_default=True, properties=())
    if not isinstance(definition, dict):
        return None
    stream_map = dict(definition)
    filter_rule = stream_map.pop(MAPPER_FILTER_OPTION, None)
    stream_map.pop(MAPPER_KEY_PROPERTIES_OPTION, None)  # the StreamMap holds the result
    include_by_default = True
    if MAPPER_ELSE_OPTION in stream_map:
        otherwise = stream_map.pop(MAPPER_ELSE_OPTION)
        if not (otherwise is None or otherwise == NULL_STRING):
            return None
        include_by_default = False
    if filter_rule is not None and not isinstance(filter_rule, str):
        return None
    properties: list[tuple[str, str | None]] = []
    for name, expression in stream_map.items():
        if expression is None or expression == NULL_STRING:
            properties.append((name, None))
        elif isinstance(expression, str):
            properties.append((name, expression))
        else:
            return None
    return _MapPlan(filter_rule, include_by_default, tuple(properties))


# --- Names ----------------------------------------------------------------------------------


class _Kind(enum.Enum):
    PROPERTY = enum.auto()  # a record property; `value` is its name
    RECORD = enum.auto()  # `_` or `record`
    CONFIG = enum.auto()  # `config`: the map config
    CONSTANT = enum.auto()  # `__stream_name__`, `__original_stream_name__`; `value` is it
    FAKE = enum.auto()  # `fake`: a Faker instance
    FUNCTION = enum.auto()  # `value` is the function (or module wrapper)
    DESELECTED = enum.auto()  # a property the catalog deselects: never in the record
    UNKNOWN = enum.auto()


@dataclass(frozen=True, slots=True)
class _Name:
    kind: _Kind
    value: object = None


class _MapContext:
    """What a stream map's expressions can see, and how its evaluator evaluates them."""

    def __init__(self, shape: _RecordShape, stream_map: StreamMap) -> None:
        """Read the map's evaluator (only a `CustomStreamMap` has expressions, and one)."""
        self.shape = shape
        self.stream_map = stream_map
        evaluator = stream_map.expr_evaluator if isinstance(stream_map, CustomStreamMap) else None
        self.functions: dict[str, t.Any] = dict(evaluator.functions) if evaluator else {}
        self.operators: dict[type[ast.AST], t.Any] = dict(evaluator.operators) if evaluator else {}
        self.node_types: frozenset[type[ast.AST]] = frozenset(evaluator.nodes if evaluator else ())
        self.attribute_index_fallback = bool(getattr(evaluator, "ATTR_INDEX_FALLBACK", False))
        self.allowed_attrs: object = getattr(evaluator, "allowed_attrs", None)
        self.map_config: object = getattr(stream_map, "map_config", None)
        self.has_fake = bool(getattr(stream_map, "fake", None))

    def resolve(self, name: str, property_name: str | None) -> _Name:  # noqa: PLR0911 - in order
        """What `name` means in an expression mapping `property_name` (None: the filter)."""
        stream_map = self.stream_map
        if name in {"_", "record"}:
            return _Name(_Kind.RECORD)
        if name == "config":
            return _Name(_Kind.CONFIG)
        if name == "__stream_name__":
            return _Name(_Kind.CONSTANT, stream_map.stream_alias)
        if name == "__original_stream_name__":
            return _Name(_Kind.CONSTANT, getattr(stream_map, "stream_name", None))
        if name == "fake" and self.has_fake:
            return _Name(_Kind.FAKE)
        if name == "self" and property_name and property_name in self.shape.selected_set:
            return _Name(_Kind.PROPERTY, property_name)
        if name in self.shape.selected_set:
            return _Name(_Kind.PROPERTY, name)
        if name in self.functions:
            return _Name(_Kind.FUNCTION, self.functions[name])
        if name in self.shape.deselected:
            return _Name(_Kind.DESELECTED)
        return _Name(_Kind.UNKNOWN)

    def check_names(self, plan: _MapPlan) -> None:
        """Raise for any name an expression of the map can never resolve.

        Raises:
            MapExpressionError: The first such name (the SDK would fail on every row that
                evaluates it, after hours of export jobs maybe).
        """
        if plan.filter_rule is not None:
            self._check_expression(plan.filter_rule, None)
        for name, expression in plan.properties:
            if expression is not None:
                self._check_expression(expression, name)

    def _check_expression(self, expression: str, property_name: str | None) -> None:
        try:
            body = ast.parse(expression).body
        except SyntaxError:
            return  # the SDK rejects it itself when it builds the map
        if not body:
            return
        nodes = list(ast.walk(body[0]))  # the SDK evaluates the first statement only
        if any(isinstance(node, _SCOPES) for node in nodes):
            return  # names bound inside the expression: left to the evaluator
        called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
        for node in nodes:
            if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)):
                continue
            if id(node) in called:  # simpleeval looks a called name up among functions only
                if node.id not in self.functions:
                    raise self._name_error(expression, property_name, node.id, called=True)
                continue
            kind = self.resolve(node.id, property_name).kind
            if kind in {_Kind.DESELECTED, _Kind.UNKNOWN}:
                raise self._name_error(expression, property_name, node.id, called=False)

    def _name_error(
        self, expression: str, property_name: str | None, name: str, *, called: bool
    ) -> MapExpressionError:
        shape = self.shape
        target = "'__filter__'" if property_name is None else f"property '{property_name}'"
        where = (
            f"Stream map of stream '{shape.stream_name}' (output stream "
            f"'{self.stream_map.stream_alias}'), {target}: the expression {expression!r}"
        )
        functions = ", ".join(sorted(self.functions))
        if called:
            problem = f"calls '{name}', which is not a stream map function ({functions})."
        elif name in shape.deselected:
            problem = (
                f"uses the property '{name}', which the catalog deselects; stream maps see "
                f"selected properties only. Select '{name}' or change the expression."
            )
        else:
            problem = (
                f"uses the name '{name}', which is neither a property of the stream's records, "
                f"a stream map name ({', '.join(_MAP_NAMES)}) nor a function ({functions})."
            )
            if name == "self":
                problem += (
                    " `self` is the value of the property being mapped, so it exists only when "
                    "that property is in the record."
                )
            elif name == "fake":
                problem += " `fake` exists only when the faker package is installed."
        available = ", ".join(shape.selected)
        msg = f"{where} {problem} Available properties: {available}."
        return MapExpressionError(msg)


# --- Code generation --------------------------------------------------------------------------


class _OutsideSubsetError(Exception):
    """The map uses something the compiler does not translate: the SDK's transform runs it."""


class _NotStatic(enum.Enum):
    """Marks a value known only when a row is there."""

    VALUE = enum.auto()


@dataclass(frozen=True, slots=True)
class _Code:
    """Python source of an expression's value."""

    source: str
    never_container: bool = False  # never a dict or a list: flattening leaves it alone
    static: object = _NotStatic.VALUE  # the value itself, when resolved at build time


class _Compiler:
    """Translates parsed expressions into Python source over a namespace of bound objects.

    Generated code refers to `row` (the input), `record` (the record, built only when something
    needs it and it is not the row), `result` (a patched copy of the row), `_t<N>` (temporaries)
    and `_g<N>` (bound objects: functions, operators, constants); it has no builtins.
    """

    def __init__(self, context: _MapContext) -> None:
        """Start with an empty namespace."""
        self.context = context
        self.namespace: dict[str, object] = {"__builtins__": {}}
        self._bound: dict[int, str] = {}
        self._temporaries = 0
        self.uses_record = False

    def bind(self, value: object) -> str:
        """The generated name of a build-time object."""
        name = self._bound.get(id(value))
        if name is None:
            name = f"_g{len(self._bound)}"
            self._bound[id(value)] = name
            self.namespace[name] = value
        return name

    def temporary(self) -> str:
        """A fresh local name."""
        self._temporaries += 1
        return f"_t{self._temporaries}"

    def row_value(self, name: str) -> _Code:
        """A property's value."""
        return _Code(f"row[{name!r}]", never_container=name in self.context.shape.scalar)

    def record(self) -> str:
        """The record (the row itself when nothing is deselected)."""
        if self.context.shape.complete:
            return "row"
        self.uses_record = True
        return "record"

    def parse(self, expression: str) -> ast.expr:
        """The expression's node, as `CustomStreamMap` parses it (the first statement)."""
        try:
            statement = ast.parse(expression).body[0]
        except (SyntaxError, IndexError) as exc:
            raise _OutsideSubsetError from exc
        if type(statement) is not ast.Expr or ast.Expr not in self.context.node_types:
            raise _OutsideSubsetError
        return statement.value

    def expression(self, node: ast.AST, property_name: str | None) -> _Code:  # noqa: C901, PLR0911, PLR0912
        """Source evaluating `node` as the map's evaluator would.

        Raises:
            _OutsideSubsetError: `node` uses something outside the compiled subset.
        """
        if type(node) not in self.context.node_types:
            raise _OutsideSubsetError
        match node:
            case ast.Constant():
                return self._constant(node)
            case ast.Name():
                return self._name(node, property_name)
            case ast.Attribute():
                return self._attribute(node, property_name)
            case ast.Call():
                return self._call(node, property_name)
            case ast.Subscript():
                return self._subscript(node, property_name)
            case ast.IfExp():
                test = self.expression(node.test, property_name)
                body = self.expression(node.body, property_name)
                orelse = self.expression(node.orelse, property_name)
                return _Code(
                    f"({body.source} if {test.source} else {orelse.source})",
                    never_container=body.never_container and orelse.never_container,
                )
            case ast.BoolOp():
                values = [self.expression(value, property_name) for value in node.values]
                word = " and " if isinstance(node.op, ast.And) else " or "
                return _Code(
                    f"({word.join(value.source for value in values)})",
                    never_container=all(value.never_container for value in values),
                )
            case ast.UnaryOp():
                operand = self.expression(node.operand, property_name)
                native = self._native(node.op)
                source = (
                    f"({native}{operand.source})"
                    if native is not None
                    else f"{self._operator(node.op)}({operand.source})"
                )
                never = isinstance(node.op, ast.Not) or operand.never_container
                return _Code(source, never_container=never)
            case ast.BinOp():
                left = self.expression(node.left, property_name)
                right = self.expression(node.right, property_name)
                native = self._native(node.op)
                source = (
                    f"({left.source} {native} {right.source})"
                    if native is not None
                    else f"{self._operator(node.op)}({left.source}, {right.source})"
                )
                return _Code(source, never_container=left.never_container and right.never_container)
            case ast.Compare():
                return self._compare(node, property_name)
            case ast.List() | ast.Tuple() | ast.Set():
                return self._collection(node, property_name)
            case ast.Dict():
                if any(key is None for key in node.keys):  # `{**x}`
                    raise _OutsideSubsetError
                pairs = [
                    f"{self.expression(key, property_name).source}: "
                    f"{self.expression(value, property_name).source}"
                    for key, value in zip(node.keys, node.values, strict=True)
                    if key is not None
                ]
                return _Code(f"{{{', '.join(pairs)}}}")
            case _:
                raise _OutsideSubsetError

    def _constant(self, node: ast.Constant) -> _Code:
        value = node.value
        if isinstance(value, (str, bytes)) and len(value) > simpleeval.MAX_STRING_LENGTH:
            raise _OutsideSubsetError  # simpleeval refuses it on every evaluation
        literal = (
            value is None
            or isinstance(value, (bool, str))
            or (type(value) is int and abs(value) < _LITERAL_INT_LIMIT)
        )
        return _Code(repr(value) if literal else self.bind(value), never_container=True)

    def _name(self, node: ast.Name, property_name: str | None) -> _Code:
        if not isinstance(node.ctx, ast.Load):
            raise _OutsideSubsetError
        name = self.context.resolve(node.id, property_name)
        match name.kind:
            case _Kind.PROPERTY:
                return self.row_value(t.cast("str", name.value))
            case _Kind.RECORD:
                return _Code(self.record())
            case _Kind.CONFIG:
                return _Code(self.bind(self.context.map_config))
            case _Kind.CONSTANT:
                value = name.value
                source = repr(value) if isinstance(value, str) else self.bind(value)
                return _Code(source, never_container=not isinstance(value, (dict, list)))
            case _Kind.FUNCTION:
                return _Code(self.bind(name.value), static=name.value)
            case _Kind.FAKE | _Kind.DESELECTED | _Kind.UNKNOWN:
                raise _OutsideSubsetError
            case _:
                t.assert_never(name.kind)

    def _attribute(self, node: ast.Attribute, property_name: str | None) -> _Code:
        """An attribute of a function or module wrapper (`datetime.datetime`), resolved now.

        Mirrors `SimpleEval._eval_attribute`; attributes of values known only per row are
        outside the subset.
        """
        attribute = node.attr
        if attribute.startswith(tuple(simpleeval.DISALLOW_PREFIXES)):
            raise _OutsideSubsetError
        if attribute in simpleeval.DISALLOW_METHODS or self.context.allowed_attrs is not None:
            raise _OutsideSubsetError
        base = self.expression(node.value, property_name)
        if base.static is _NotStatic.VALUE:
            raise _OutsideSubsetError
        try:
            value = _static_attribute(base.static, attribute, self.context)
            forbidden = isinstance(value, types.ModuleType) or (
                callable(value) and value in simpleeval.DISALLOW_FUNCTIONS
            )
        except Exception as exc:  # anything the evaluator would raise on each row
            raise _OutsideSubsetError from exc
        if forbidden:
            raise _OutsideSubsetError
        return _Code(
            self.bind(value),
            never_container=not isinstance(value, (dict, list)),
            static=value,
        )

    def _call(self, node: ast.Call, property_name: str | None) -> _Code:
        """A call of a function by name, or of a function's attribute (`json.dumps`)."""
        function: object
        if isinstance(node.func, ast.Name):  # simpleeval looks it up among functions only
            if node.func.id not in self.context.functions:
                raise _OutsideSubsetError
            function = self.context.functions[node.func.id]
            try:
                forbidden = function in simpleeval.DISALLOW_FUNCTIONS
            except TypeError as exc:  # unhashable
                raise _OutsideSubsetError from exc
            if forbidden:
                raise _OutsideSubsetError
            callee = self.bind(function)
        elif isinstance(node.func, ast.Attribute):
            resolved = self._attribute(node.func, property_name)
            function, callee = resolved.static, resolved.source
        else:
            raise _OutsideSubsetError
        arguments = []
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                raise _OutsideSubsetError
            arguments.append(self.expression(argument, property_name).source)
        for keyword in node.keywords:
            if keyword.arg is None or ast.keyword not in self.context.node_types:  # `**x`
                raise _OutsideSubsetError
            value = self.expression(keyword.value, property_name).source
            arguments.append(f"{keyword.arg}={value}")
        scalar = any(function is known for known in _SCALAR_FUNCTIONS)
        return _Code(f"{callee}({', '.join(arguments)})", never_container=scalar)

    def _subscript(self, node: ast.Subscript, property_name: str | None) -> _Code:
        key = node.slice
        if (
            isinstance(node.value, ast.Name)
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and key.value in self.context.shape.selected_set
            and self.context.resolve(node.value.id, property_name).kind is _Kind.RECORD
        ):
            self.expression(key, property_name)  # the constant's own checks
            return self.row_value(key.value)  # `record["x"]`: the row's value
        container = self.expression(node.value, property_name).source
        if isinstance(key, ast.Slice):
            if ast.Slice not in self.context.node_types:
                raise _OutsideSubsetError
            bounds = [
                "" if part is None else self.expression(part, property_name).source
                for part in (key.lower, key.upper, key.step)
            ]
            index = ":".join(bounds)
        else:
            index = self.expression(key, property_name).source
        return _Code(f"{container}[{index}]")

    def _compare(self, node: ast.Compare, property_name: str | None) -> _Code:
        """A comparison chain; like simpleeval, each operand evaluated once, left to right."""
        left = self.expression(node.left, property_name)
        operands = [self.expression(operand, property_name) for operand in node.comparators]
        never = left.never_container and all(operand.never_container for operand in operands)
        natives = [self._native(op) for op in node.ops]
        if all(native is not None for native in natives):
            parts = [left.source]
            for native, operand in zip(natives, operands, strict=True):
                parts += [t.cast("str", native), operand.source]
            return _Code(f"({' '.join(parts)})", never_container=never)
        steps = []
        previous = left.source
        for position, (op, native, operand) in enumerate(
            zip(node.ops, natives, operands, strict=True)
        ):
            right = operand.source
            if position < len(operands) - 1:
                temporary = self.temporary()
                right, following = f"({temporary} := {right})", temporary
            else:
                following = right
            steps.append(
                f"({previous} {native} {right})"
                if native is not None
                else f"{self._operator(op)}({previous}, {right})"
            )
            previous = following
        return _Code(f"({' and '.join(steps)})", never_container=never)

    def _collection(self, node: ast.List | ast.Tuple | ast.Set, property_name: str | None) -> _Code:
        if any(isinstance(item, ast.Starred) for item in node.elts):
            raise _OutsideSubsetError
        items = [self.expression(item, property_name).source for item in node.elts]
        if isinstance(node, ast.List):
            return _Code(f"[{', '.join(items)}]")
        if isinstance(node, ast.Tuple):
            return _Code(f"({''.join(item + ', ' for item in items)})", never_container=True)
        return _Code(f"{{{', '.join(items)}}}", never_container=True)

    def _operator(self, op: ast.AST) -> str:
        """The evaluator's function for an operator.

        Raises:
            _OutsideSubsetError: The evaluator has none (it fails on every evaluation).
        """
        function = self.context.operators.get(type(op))
        if function is None:
            raise _OutsideSubsetError
        return self.bind(function)

    def _native(self, op: ast.AST) -> str | None:
        """Python's syntax for an operator, if it is exactly the evaluator's function."""
        function = self.context.operators.get(type(op))
        if function is None:
            raise _OutsideSubsetError
        expected, syntax = _NATIVE_OPERATORS.get(type(op), (None, None))
        if syntax is None or function is not simpleeval.DEFAULT_OPERATORS.get(type(op)):
            return None
        if expected is not None and function is not expected:
            return None
        return syntax


def _static_attribute(value: object, attribute: str, context: _MapContext) -> object:
    """`getattr`, with simpleeval's fallback to `value[attribute]`."""
    try:
        return getattr(value, attribute)
    except (AttributeError, TypeError):
        if not context.attribute_index_fallback:
            raise
        return value[attribute]  # type: ignore[index]


class _Flattening(enum.Enum):
    """What flattening does to a top-level value."""

    NONE = enum.auto()  # off: the value as it is
    CONTAINERS = enum.auto()  # dicts and lists become JSON strings
    ALWAYS = enum.auto()  # every value becomes a JSON string (a schema quirk of the SDK)


def _flattened(stream_map: StreamMap, key: str) -> tuple[str, _Flattening]:
    """Where and how a top-level key lands after the map's flattening, probed with the SDK's.

    Raises:
        _OutsideSubsetError: The value would be flattened into several keys (an object the
            schema describes), or something else the compiled code does not do.
    """
    scalar = stream_map.flatten_record({key: 0})
    mapping: dict[str, t.Any] = {}
    sequence: list[t.Any] = []
    mapped = stream_map.flatten_record({key: mapping})
    listed = stream_map.flatten_record({key: sequence})
    if len(scalar) != 1 or len(mapped) != 1 or len(listed) != 1:
        raise _OutsideSubsetError
    ((new_key, value),) = scalar.items()
    if mapped.get(new_key) is mapping and listed.get(new_key) is sequence and value == 0:
        return new_key, _Flattening.NONE
    if mapped.get(new_key) != serialize_json(mapping) or listed.get(new_key) != serialize_json(
        sequence
    ):
        raise _OutsideSubsetError
    if value == serialize_json(0):
        return new_key, _Flattening.ALWAYS
    if type(value) is int and value == 0:
        return new_key, _Flattening.CONTAINERS
    raise _OutsideSubsetError


def _compile_map(context: _MapContext, plan: _MapPlan, fallback: Transform) -> Transform | None:
    """One function computing the map's record from a row; None if outside the subset."""
    compiler = _Compiler(context)
    try:
        fields = _fields(compiler, plan)
        condition = None
        if plan.filter_rule is not None:
            condition = compiler.expression(compiler.parse(plan.filter_rule), None)
        outputs = _flattened_fields(compiler, fields)
    except _OutsideSubsetError:
        return None
    schema_keys = set(context.stream_map.transformed_schema.get("properties", {}))
    if {field.output_key for field in outputs} != schema_keys:
        return None  # not the map the SDK built from this definition (a different config?)
    statements = _record_statements(context.shape, outputs)
    if statements is None and condition is None and not compiler.uses_record:
        return _identity
    body = []
    if compiler.uses_record:
        selected = context.shape.selected
        body.append(f"record = {{{', '.join(f'{name!r}: row[{name!r}]' for name in selected)}}}")
    if condition is not None:
        body += [f"if not ({condition.source}):", "    return None"]
    body += ["return row"] if statements is None else statements
    source = "\n".join(
        [
            "def transform(row):",
            "    try:",
            *(f"        {line}" for line in body),
            f"    except {compiler.bind(Exception)}:",  # the SDK's way: its own error, or value
            f"        return {compiler.bind(fallback)}(row)",
        ]
    )
    namespace = compiler.namespace
    filename = f"<stream map {context.stream_map.stream_alias!r}>"
    # The source holds only repr() literals and generated names; bound objects are in namespace.
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    return t.cast("Transform", namespace["transform"])


def _fields(compiler: _Compiler, plan: _MapPlan) -> dict[str, _Code]:
    """The record's keys in order, each with the source of its value, before flattening."""
    context = compiler.context
    shape = context.shape
    fields: dict[str, _Code] = {}
    if plan.include_by_default:
        fields = {name: compiler.row_value(name) for name in shape.selected}
    else:  # key properties, then mapped ones
        for name in context.stream_map.transformed_key_properties or []:
            if name in shape.selected_set:
                fields[name] = compiler.row_value(name)
    for name, expression in plan.properties:
        if expression is None:
            fields.pop(name, None)
        else:
            fields[name] = compiler.expression(compiler.parse(expression), name)
    return fields


@dataclass(frozen=True, slots=True)
class _Field:
    """One key of the output record."""

    key: str  # before flattening
    output_key: str  # after flattening (its key length limit may shorten it)
    value: str  # source, flattening folded in


def _flattened_fields(compiler: _Compiler, fields: dict[str, _Code]) -> list[_Field]:
    """The output record's keys and values, in order, flattening folded in."""
    stream_map = compiler.context.stream_map
    outputs = []
    keys: set[str] = set()
    container_json = _container_json()
    for key, code in fields.items():
        output_key, flattening = _flattened(stream_map, key)
        if output_key in keys:
            raise _OutsideSubsetError
        keys.add(output_key)
        value = code.source
        if flattening is _Flattening.ALWAYS:
            value = f"{compiler.bind(serialize_json)}({value})"
        elif flattening is _Flattening.CONTAINERS and not code.never_container:
            temporary = compiler.temporary()
            value = (
                f"({compiler.bind(container_json)}({temporary}) "
                f"if {compiler.bind(isinstance)}(({temporary} := {value}), "
                f"{compiler.bind(_CONTAINERS)}) else {temporary})"
            )
        outputs.append(_Field(key, output_key, value))
    return outputs


def _container_json() -> Callable[[object], str]:
    """`serialize_json` for the values flattening encodes, fast for flat objects of strings.

    `serialize_json` sets up a simplejson encoder per call (about 3 us). A flat object of
    strings (`extraColumns`, `invalidValues`) is just its strings in ASCII-only JSON, which
    `json.encoder.encode_basestring_ascii` writes. The fast path is taken only if it gives
    `serialize_json`'s very text for probes of awkward strings (so a change in the SDK's
    serializer, e.g. separators or escaping, turns it off); anything else is `serialize_json`.
    """
    escape = json.encoder.encode_basestring_ascii

    def container_json(value: object) -> str:
        if type(value) is not dict:
            return serialize_json(value)
        parts = []
        for key, item in value.items():
            if type(key) is not str:
                return serialize_json(value)
            if item is None:
                parts.append(f"{escape(key)}:null")
            elif type(item) is str:
                parts.append(f"{escape(key)}:{escape(item)}")
            else:
                return serialize_json(value)
        return f"{{{','.join(parts)}}}"

    probes: list[dict[str, str | None]] = [
        {},
        {"b": "é 😀 \u2028 \x7f ~ /", "a": None, "": '"\\\b\f\n\r\t\x00\x1f', "ü": ""},
    ]
    if all(container_json(probe) == serialize_json(probe) for probe in probes):
        return container_json
    return serialize_json


def _record_statements(shape: _RecordShape, fields: list[_Field]) -> list[str] | None:
    """Statements returning the record; None if the record is the row itself.

    Two forms, the same record: a dict display of every field, or (when the record keeps the
    row's keys in the row's order and changes few of them) a copy of the row, patched.
    """
    if not fields:  # an empty record is None for the SDK (`CustomStreamMap.transform`)
        return ["return None"]
    keys = {field.key for field in fields}
    existing = [field.key for field in fields if field.key in shape.selected_set]
    patchable = (
        all(field.key == field.output_key for field in fields)
        and existing == [name for name in shape.selected if name in keys]  # in the row's order
        and [field.key for field in fields[: len(existing)]] == existing  # before new keys
    )
    # Not in the record (deselected: a map may add such a key anew, at the end), or dropped.
    removed = [
        name for name in shape.properties if name not in shape.selected_set or name not in keys
    ]
    patches = [field for field in fields if field.value != f"row[{field.key!r}]"]
    if patchable and not removed and not patches:
        return None
    if patchable and len(removed) + len(patches) <= len(fields) // 2:
        # Deleting first, then assigning: kept keys stay in place, new ones follow in order.
        statements = ["result = row.copy()"]
        if removed:
            statements.append(f"del {', '.join(f'result[{name!r}]' for name in removed)}")
        statements += [f"result[{field.key!r}] = {field.value}" for field in patches]
        return [*statements, "return result"]
    items = ", ".join(f"{field.output_key!r}: {field.value}" for field in fields)
    return [f"return {{{items}}}"]


def _identity(row: Row) -> Row:
    """The record of a map that changes nothing: the row itself."""
    return row
