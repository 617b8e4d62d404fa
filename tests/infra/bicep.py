"""The Bicep templates under infra/ as data, for the infra tests.

Templates are parsed with pycep, the parser Checkov itself uses for Bicep, so the tests read the
same structure Checkov judged. ``evaluate`` resolves the few expression shapes the tests need
(literals, symbol references, string interpolation, ``==``, ``!=``, ``!``, ``?:``, ``a[b]``,
``union``, ``empty``, ``contains``, ``split``, ``last``)
from a table of symbol values, and raises on anything else so a change of shape fails loudly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

_SKIP = re.compile(r"//\s*checkov:skip=(?P<check>[A-Z0-9_]+)(?::(?P<reason>.*))?$")
_RESOURCE_LINE = re.compile(r"^resource\s+(?P<symbol>\w+)\s+'(?P<type>[^@']+)@")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def template(relative: str) -> dict[str, Any]:
    """The parsed template ``infra/<relative>``."""
    return BicepParser().parse(text=(INFRA / relative).read_text(encoding="utf-8"))


def body(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A resource's or module's own body, unwrapping a loop (``[for ...: {...}]``) or a
    condition (``= if (...) {...}``) if any."""
    return config["config"] if "loop_type" in config or set(config) == {"condition", "config"} else config


def resources(parsed: Mapping[str, Any], resource_type: str) -> dict[str, Mapping[str, Any]]:
    """Symbol -> body of every resource of ``resource_type`` declared in a template."""
    return {
        symbol: body(declaration["config"])
        for symbol, declaration in parsed.get("resources", {}).items()
        if declaration["type"].lower() == resource_type.lower()
    }


def module_params(parsed: Mapping[str, Any], symbol: str) -> Mapping[str, Any]:
    return body(parsed["modules"][symbol]["config"])["params"]


def walk(node: Any) -> Iterator[Any]:
    """Every value in a parsed template, depth first."""
    yield node
    if isinstance(node, Mapping):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@dataclass(frozen=True)
class Skip:
    file: Path
    line: int
    check_id: str
    reason: str
    resource: str | None  # symbol of the enclosing resource block, None outside any


def skip_comments(path: Path) -> list[Skip]:
    """Every ``// checkov:skip=ID: reason`` comment with the resource block it sits in."""
    skips: list[Skip] = []
    current: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        declared = _RESOURCE_LINE.match(line)
        if declared:
            current = declared.group("symbol")
        elif line.startswith(("}", "]")):
            current = None
        found = _SKIP.search(line.strip())
        if found:
            skips.append(
                Skip(path, number, found.group("check"), (found.group("reason") or "").strip(), current)
            )
    return skips


class Unsupported(ValueError):
    """An expression shape ``evaluate`` does not model."""


def _key(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else text


def evaluate(node: Any, symbols: Mapping[str, Any]) -> Any:
    """The value of a parsed expression, given the values of the symbols it names.

    pycep gives a bare symbol reference and a string literal the same shape (a str): a string
    that names a known symbol is read as the reference.
    """
    if node is None or isinstance(node, bool | int | float):
        return node
    if isinstance(node, str):
        if node in symbols:
            return symbols[node]
        return _INTERPOLATION.sub(lambda m: str(_interpolated(m.group(1), symbols)), node)
    if isinstance(node, list):
        return [evaluate(item, symbols) for item in node]
    if isinstance(node, Mapping) and set(node) == {"operator"}:
        return _operator(node["operator"], symbols)
    if isinstance(node, Mapping) and set(node) == {"function"}:
        return _function(node["function"], symbols)
    if isinstance(node, Mapping):
        return {_key(key): evaluate(value, symbols) for key, value in node.items()}
    raise Unsupported(f"cannot evaluate {node!r}")


def _interpolated(expression: str, symbols: Mapping[str, Any]) -> Any:
    if expression in symbols:
        return symbols[expression]
    raise Unsupported(f"no value given for ${{{expression}}}")


def _operator(operator: Mapping[str, Any], symbols: Mapping[str, Any]) -> Any:
    kind, operands = operator["type"], operator["operands"]
    if kind == "conditional":
        chosen = "true_value" if evaluate(operands["condition"], symbols) else "false_value"
        return evaluate(operands[chosen], symbols)
    if kind in ("equals", "not_equals"):
        equal = evaluate(operands["operand_1"], symbols) == evaluate(operands["operand_2"], symbols)
        return equal if kind == "equals" else not equal
    if kind == "index_accessor":
        return evaluate(operands["operand_1"], symbols)[evaluate(operands["operand_2"], symbols)]
    if kind == "not":
        return not evaluate(operands["bool_value"], symbols)
    if kind == "property_accessor":
        return _interpolated(dotted(operator), symbols)
    raise Unsupported(f"operator {kind}")


def dotted(node: Any) -> str:
    """``a.b.c`` for a parsed property access (or its operator), the symbol for a bare reference."""
    if isinstance(node, str):
        return node
    operator = node.get("operator", node)
    if operator.get("type") != "property_accessor":
        raise Unsupported(f"not a property access: {node!r}")
    operands = operator["operands"]
    return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"


def _function(function: Mapping[str, Any], symbols: Mapping[str, Any]) -> Any:
    kind, parameters = function["type"], function["parameters"]
    if kind == "union":
        merged: dict[str, Any] = {}
        for argument in parameters.values():
            merged.update(evaluate(argument, symbols))
        return merged
    if kind == "empty":
        return not evaluate(parameters["item_to_test"], symbols)
    if kind == "contains":
        return evaluate(parameters["item_to_find"], symbols) in evaluate(parameters["container"], symbols)
    if kind == "split":
        parts = evaluate(parameters["input_string"], symbols).split(
            evaluate(parameters["delimiter"], symbols)
        )
        return parts[function["index"]] if "index" in function else parts
    if kind == "last":
        return evaluate(parameters["arg_1"], symbols)[-1]
    raise Unsupported(f"function {kind}")
