"""The machinery every spec shares: strict loading from dicts and TOML, saving, printing and hashing.

Specs are frozen dataclasses. A spec is checked when it is made (``__post_init__``), so a spec that exists
is a valid one. Loading rejects unknown keys and values of the wrong type with a :class:`SpecError` that
names the dotted key, e.g. ``training.lr: must be > 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Self

import tomli_w

from dpcluster.errors import SpecError, UserError
from dpcluster.hashing import stable_hash


def check(condition: bool, key: str, message: str) -> None:
    """Raise a SpecError for ``key`` unless ``condition`` holds."""
    if not condition:
        raise SpecError(key, message)


def check_choice(value: str, choices: typing.Iterable[str], key: str) -> None:
    choices = tuple(choices)
    check(value in choices, key, f"must be one of {', '.join(choices)}; got {value!r}")


class Table(tuple):
    """A free-form TOML table (a user network's ``[model.options]``): its (key, value) pairs sorted by key, lists
    as tuples and inner tables as Tables, so a spec holding one is frozen and hashes; as plain data it is a dict
    again. Values are strings, booleans, integers, finite numbers, and lists and tables of them."""

    @classmethod
    def of(cls, mapping: Mapping[str, Any], key: str) -> Table:
        return cls(sorted((str(k), _free_value(v, f"{key}.{k}")) for k, v in mapping.items()))

    def as_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self}


def _free_value(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return Table.of(value, key)
    if isinstance(value, (list, tuple)):
        return tuple(_free_value(v, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(key, f"must be a finite number, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        raise SpecError(key, f"must be below 2**63, got {value}")
    if not isinstance(value, (str, bool, int, float)):
        raise SpecError(key, f"must be a string, number, boolean, list or table, got {value!r}")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce_value(value: Any, tp: Any, key: str) -> Any:
    """Convert a loaded (TOML/JSON) value to the field type ``tp``, or raise naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if len(present := [arg for arg in args if arg is not type(None)]) == 1:
            return coerce_value(value, present[0], key)  # its own error, naming the key inside (options.hidden)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(value, arg, key)
            except SpecError as error:
                errors.append(error.message)
        raise SpecError(key, " or ".join(errors))
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SpecError(key, f"must be a list, got {value!r}")
        return tuple(coerce_value(item, item_type, f"{key}[{i}]") for i, item in enumerate(value))
    if tp is Table:
        if isinstance(value, Table):
            return value
        if not isinstance(value, Mapping):
            raise SpecError(key, f"must be a table, got {value!r}")
        return Table.of(value, key)
    if isinstance(tp, type) and issubclass(tp, Spec):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise SpecError(key, f"must be a table, got {value!r}")
        try:
            return tp.from_dict(value)
        except SpecError as error:
            raise error.under(key) from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(key, f"must be a number, got {value!r}")
        # TOML has inf and nan; no setting means either (an infinite learning rate trains to NaN).
        if not math.isfinite(value):
            raise SpecError(key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(key, f"must be an integer, got {value!r}")
        # Seeds and counts go to torch and numpy as 64-bit integers.
        if not -2**63 <= value < 2**63:
            raise SpecError(key, f"must be below 2**63, got {value}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise SpecError(key, f"must be a {_type_name(tp)}, got {value!r}")
        return value
    raise TypeError(f"unsupported spec field type {tp!r} for {key}")


def _plain(value: Any) -> Any:
    """A spec value as plain data (dicts, lists, scalars) for TOML and JSON."""
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, Table):
        return value.as_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# Field metadata for settings that do not change a result (where the data lives, worker counts): they are left
# out of content hashes, so moving a data set does not re-key finished work.
NOT_IDENTITY = types.MappingProxyType({"identity": False})


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, tables merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            value = _merged(out[key], value)
        out[key] = value
    return out


def _toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"not valid TOML: {error}") from None


# --- dotted keys ("training.lr"): one path for overrides (--set), sweep grids and search spaces ----------------

def dotted(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: {"training": {"epochs": 5}} -> {"training.epochs": 5}."""
    out = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def with_values(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (nested tables, as ``to_dict`` gives them) with each dotted key set to its value."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for key, value in values.items():
        *tables, leaf = key.split(".")
        node = out
        for table in tables:
            inner = node.get(table, {})
            if not isinstance(inner, Mapping):
                raise SpecError(key, f"{table!r} holds a value, not a table of settings")
            node[table] = dict(inner)
            node = node[table]
        node[leaf] = value
    return out


def value_at(spec: Any, key: str) -> Any:
    """The value of the field the dotted ``key`` names in ``spec`` (a table's spec for a table); KeyError where
    there is no such field."""
    node = spec
    for part in key.split("."):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            raise KeyError(key)
        node = getattr(node, part)
    return node


def parse_assignment(text: str) -> tuple[str, Any, str]:
    """``KEY=VALUE`` (``--set``) as (dotted key, value, the value's text). The value is read as TOML (``0.02``,
    ``true``, ``[0, 1]``, ``"x"``), or taken as the bare string where it is not TOML (``/data/cifar``)."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. training.lr=0.02")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value, raw.strip()


def field_values(kind: type, data: Mapping[str, Any], keys: typing.Collection[str] | None = None) -> dict[str, Any]:
    """``data``'s values as the fields of ``kind`` they set (of ``keys`` only, where given): an unknown key, or a
    value of the wrong type, is a SpecError naming it. A partial table for a field holding a spec changes that
    field's default (a default_factory's spec, say), not the spec class's defaults."""
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind) if f.init and (keys is None or f.name in keys)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise SpecError(key, f"unknown key (known: {', '.join(sorted(fields))})")
        default = _field_default(fields[key])
        if isinstance(default, Spec) and isinstance(value, Mapping):
            value = _merged(default.to_dict(), value)
        values[key] = coerce_value(value, hints[key], key)
    return values


def partial_table(kind: type, table: Mapping[str, Any]) -> Table:
    """A partial table of ``kind``'s fields (a sweep's ``[data.NAME]`` over its base data, ``[sets.N]`` over its
    inner loop's training): each key a field of ``kind`` and each value of its type, checked now; the table is
    kept as written and applied over a spec with ``with_values``, where the spec's own checks run."""
    field_values(kind, table)
    return Table.of(table, "")


class Spec:
    """Mixin for frozen dataclass specs."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**field_values(cls, data))

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain data; ``None`` fields are left out (TOML has no null)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = _plain(value)
        return out

    def identity_dict(self) -> dict[str, Any]:
        """What identifies this spec's results: every field, defaults included (so a changed default gives new ids
        rather than old results under an old id), except fields marked ``metadata=NOT_IDENTITY`` (where the data
        lives, worker counts: they cannot change a result)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("identity", True) and value is not None:
                out[f.name] = value.identity_dict() if isinstance(value, Spec) else _plain(value)
        return out

    def content_hash(self) -> str:
        """A stable id of the spec's results: the hash of :meth:`identity_dict`."""
        return stable_hash(self.identity_dict(), 12)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    def with_values(self, values: Mapping[str, Any]) -> Self:
        """This spec with each dotted key (``training.lr``) set to its value, loaded and checked as a spec file's
        would be: a bad key or value raises a SpecError naming the dotted key."""
        return type(self).from_dict(with_values(self.to_dict(), values))

    def with_assignments(self, assignments: typing.Iterable[str], option: str = "--set") -> Self:
        """This spec with ``KEY=VALUE`` texts applied in order (see :func:`parse_assignment`). A value read as a
        number or boolean where the field takes a string is taken as its text (``data.label=2024``). A mistake is
        one UserError naming the option and the key."""
        spec = self
        for text in assignments:
            key, value, raw = parse_assignment(text)
            try:
                spec = spec.with_values({key: value})
            except SpecError as error:
                if isinstance(value, str) or error.key != key:
                    raise UserError(f"{option} {key}: {error.message}") from None
                try:
                    spec = spec.with_values({key: raw})
                except SpecError:
                    raise UserError(f"{option} {key}: {error.message}") from None
        return spec

    # --- TOML -------------------------------------------------------------------------------
    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> Self:
        return cls.from_dict(_toml(text))

    @classmethod
    def from_file_dict(cls, data: Mapping[str, Any], path: Path) -> Self:
        """The spec the file ``path`` holds as ``data``; a spec whose file names others (a search's base sweep)
        reads them relative to it."""
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Written to a temporary name of its own and renamed: two processes saving the same file never collide."""
        from dpcluster.atomic import write_atomic

        text = self.to_toml().encode()
        write_atomic(Path(path), lambda handle: handle.write(text))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise UserError(f"cannot read spec {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"cannot read spec {path}: not a text file (TOML is UTF-8 text)") from None
        try:
            return cls.from_file_dict(_toml(text), path)
        except SpecError as error:
            raise SpecError(error.key, f"{error.message} (in {path})") from None
        except UserError as error:
            raise UserError(f"{path}: {error}") from None

    # --- printing -----------------------------------------------------------------------------
    def __str__(self) -> str:
        return "\n".join(self._lines(0))

    def _lines(self, indent: int) -> list[str]:
        pad = "  " * indent
        lines = [f"{pad}{type(self).__name__}"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Spec):
                lines.append(f"{pad}  {f.name}:")
                lines.extend(value._lines(indent + 2))
            else:
                lines.append(f"{pad}  {f.name} = {_plain(value)!r}")
        return lines
