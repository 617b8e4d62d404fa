"""One message shape for every configuration error: ``<setting or file>: <field path>: <problem>``.

Settings, vantage points and channels are pydantic models, and so is the probe wire format
(``probes.wire``, where the "setting" is the result's place in an answer); ``describe`` turns the
first problem pydantic found into that one line (the baseline adds its line numbers, see
``monitor.config.baseline``). A field path is dotted keys and list indexes, as in
``vantages[0].inside``; a scalar setting has none (``KVMON_PROBE_PORT: must be at most 65535``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

# What a list or mapping given where a value belongs is called (rather than quoting all of it).
_TYPE_NAMES = {
    bool: "true or false",
    int: "a number",
    float: "a number",
    str: "a text",
    list: "a list",
    dict: "a mapping",
    type(None): "nothing",
}

# pydantic's error types whose own text is worded for a programmer; here is the operator's wording.
_EXPECTED = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "dataclass_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_exact_type": "a mapping",
    "datetime_type": "an ISO 8601 date-time",
    "datetime_parsing": "an ISO 8601 date-time",
    "datetime_from_date_parsing": "an ISO 8601 date-time",
}


def message(where: str, path: str, problem: str) -> str:
    """The one line: ``where: path: problem`` (``where: problem`` when there is no path)."""
    return f"{where}: {path}: {problem}" if path else f"{where}: {problem}"


def field_path(location: Sequence[str | int]) -> str:
    """``("entries", 0, "mode")`` -> ``entries[0].mode``."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(
    exc: ValidationError,
    *,
    where: str,
    root: Sequence[str | int] = (),
) -> str:
    """The first problem of ``exc`` as one line naming ``where``, the field path and the problem.

    ``root`` is prefixed to every path (the setting's own name when the model is validated by
    setting name: ``KVMON_PROBE_PORT`` is then ``where``, not a path).
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    location = [part for part in first["loc"] if part != "[key]"]
    if location[: len(root)] == list(root):
        location = location[len(root) :]
    problem = _problem(first)
    if len(errors) > 1:
        more = len(errors) - 1
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    return message(where, field_path(location), problem)


def _problem(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):  # a model's, a dataclass's
        return "unknown field"
    if kind == "enum":  # pydantic says "'a', 'b' or 'c'"; kvmon lists them as choice() does
        accepted = str(error["ctx"]["expected"]).replace("'", "").replace(" or ", ", ")
        return f"{error['input']!r} is not one of {accepted}"
    if kind == "timezone_aware":
        return f"{error['input']!r} has no UTC offset"
    if kind in _EXPECTED:
        given = error.get("input")
        shown = _type_name(given) if isinstance(given, dict | list) else repr(given)
        return f"expected {_EXPECTED[kind]}, got {shown}"
    context = error.get("ctx") or {}
    for bound, wording in (("ge", "at least"), ("le", "at most"), ("gt", "more than"), ("lt", "less than")):
        if bound in context:
            return f"must be {wording} {context[bound]}, got {error['input']!r}"
    return str(error["msg"]).removeprefix("Value error, ")


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def choice(enum: type[StrEnum]) -> Any:
    """A validator taking any member of ``enum`` by its value, case-insensitively."""
    members = {member.value.lower(): member for member in enum}

    def check(value: Any) -> StrEnum:
        if isinstance(value, enum):
            return value
        text = value.strip().lower() if isinstance(value, str) else None
        if text is None or text not in members:
            accepted = ", ".join(member.value for member in enum)
            raise ValueError(f"{value!r} is not one of {accepted}")
        return members[text]

    return BeforeValidator(check)


def problem_at(location: Sequence[str | int], problem: str, *, given: Any) -> ValidationError:
    """A ValidationError for ``problem`` at ``location`` below the value being validated.

    Raised from a validator of a list (a name defined twice), pydantic prefixes the list's own
    location, so the message names the very item and field: ``vantages[1].name``.
    """
    error = PydanticCustomError("kvmon", problem)  # no context given, so no placeholders filled in
    return ValidationError.from_exception_data(
        "kvmon", [{"type": error, "loc": tuple(location), "input": given}]
    )


# -- values every operator file shares (each raises ValueError with the problem the operator sees) --

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"expected 1-64 letters, digits, dots, hyphens or underscores, got {value!r}")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _setting_name(value: str) -> str:
    if not _SETTING.fullmatch(value):
        raise ValueError(f"expected the name of an app setting (letters, digits and _), got {value!r}")
    return value


Name = Annotated[str, AfterValidator(_name)]
"""A name an operator gives (a vantage point, a channel): what messages and stored records show."""
Text = Annotated[str, AfterValidator(_text)]
"""Free text that must say something; surrounding blanks dropped."""
SettingName = Annotated[str, AfterValidator(_setting_name)]
"""The name of the app setting that holds a value (a URL, a key), never the value itself."""
