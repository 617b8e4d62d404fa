"""The tree draws the pipeline, and this test keeps it so.

Every production module's imports are read with ``ast`` (top-level, inside functions and under
``TYPE_CHECKING`` alike: an import deferred to dodge a cycle is still a cycle) and checked against
the house plan:

- no import cycle anywhere in ``monitor/``, ``probes/`` and ``function_app.py``;
- the stages of ``monitor/`` import only stages below them (``STAGES``, lowest first);
- ``monitor/judge/`` is pure: no SDK, no socket or HTTP client, no store, no clock read;
- ``probes/`` never imports the monitor's app, CLI, store, judge, outputs or sources;
- no production module imports ``lab`` (the emulator is for tests, the demo and benchmarks).

Each check is also run against a small tree with the fault in it, so none of them can pass by
reading nothing.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The monitor's stages, lowest first: a module may import its own stage and the ones before it.
# The shared records (model, netaddr, jsonable, errors, azure_errors, azure_origin, httpsession,
# naming) sit below
# every stage.
STAGES = ("shared", "config", "sources", "judge", "store", "outputs", "app", "cli")
SHARED = (
    "monitor.model",
    "monitor.model_storage",
    "monitor.scan_report",
    "monitor.netaddr",
    "monitor.jsonable",
    "monitor.errors",
    "monitor.azure_errors",
    "monitor.azure_origin",
    "monitor.httpsession",
    "monitor.naming",
    "monitor.naming.keyvault",
    "monitor.naming.storage",
)

# What a pure decision may not touch: the SDKs and network clients, the store, and the clock.
IMPURE_PACKAGES = (
    "azure",
    "requests",
    "urllib3",
    "dns",
    "socket",
    "ssl",
    "http",
    "sqlite3",
    "jinja2",
    "monitor.store",
    "monitor.sources",
    "monitor.outputs",
    "monitor.app",
    "monitor.cli",
    "probes",
)
CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time")}
CLOCK_CALLS |= {("time", "monotonic"), ("time", "perf_counter"), ("dt", "now")}

PROBES_MAY_IMPORT = (*SHARED, "monitor.config")


@dataclass(frozen=True)
class Module:
    name: str
    path: pathlib.Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def load_modules(root: pathlib.Path) -> dict[str, Module]:
    paths = [*root.glob("monitor/**/*.py"), *root.glob("probes/**/*.py"), *root.glob("function_app.py")]
    modules = {}
    for path in sorted(paths):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return modules


def imported_names(
    module: Module, *, modules: Mapping[str, Module] | None = None
) -> Iterator[tuple[str, int]]:
    """Every module this module imports (absolute), with its line. ``from package import name``
    imports ``package.name`` where that is one of ``modules``, else ``package``."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            known = [name for name in submodules if modules is not None and name in modules]
            if len(known) < len(submodules):
                yield base, node.lineno
            for name in known:
                yield name, node.lineno


def internal_edges(modules: Mapping[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: the line of its first import}."""
    edges: dict[str, dict[str, int]] = {}
    for name, module in modules.items():
        targets: dict[str, int] = {}
        for imported, line in imported_names(module, modules=modules):
            if imported in modules and imported != name:
                targets.setdefault(imported, line)
        edges[name] = targets
    return edges


def find_cycles(edges: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or around a loop (Tarjan's
    strongly connected components of more than one module, or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, {})):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def stage_of(name: str) -> str | None:
    if name in SHARED:
        return "shared"
    parts = name.split(".")
    if parts[0] != "monitor" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in STAGES else None


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def cycle_problems(modules: Mapping[str, Module]) -> list[str]:
    return [
        "modules that import each other: " + ", ".join(group)
        for group in find_cycles(internal_edges(modules))
    ]


def stage_problems(modules: Mapping[str, Module]) -> list[str]:
    problems = []
    for name, targets in internal_edges(modules).items():
        stage = stage_of(name)
        if stage is None:
            continue
        for target, line in targets.items():
            target_stage = stage_of(target)
            if target_stage is not None and STAGES.index(target_stage) > STAGES.index(stage):
                problems.append(
                    f"{modules[name].path.name}:{line}: {name} ({stage}) imports {target} ({target_stage})"
                )
            elif target_stage is None and target.startswith("monitor."):
                problems.append(f"{name}:{line}: imports {target}, which belongs to no stage")
    return problems


def purity_problems(modules: Mapping[str, Module]) -> list[str]:
    problems = []
    for name, module in modules.items():
        if not _under(name, ("monitor.judge",)):
            continue
        for imported, line in imported_names(module, modules=modules):
            if _under(imported, IMPURE_PACKAGES):
                problems.append(f"{name}:{line}: the judge imports {imported}")
                break
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if (owner_name, node.func.attr) in CLOCK_CALLS:
                    problems.append(
                        f"{name}:{node.lineno}: the judge reads the clock ({ast.unparse(node.func)})"
                    )
    return problems


def probes_problems(modules: Mapping[str, Module]) -> list[str]:
    problems = []
    for name, module in modules.items():
        if not _under(name, ("probes",)):
            continue
        for imported, line in imported_names(module, modules=modules):
            if (
                imported.startswith("monitor")
                and not _under(imported, PROBES_MAY_IMPORT)
                and imported != "monitor"
            ):
                problems.append(f"{name}:{line}: probes import {imported}")
    return problems


def lab_problems(modules: Mapping[str, Module]) -> list[str]:
    return [
        f"{name}:{line}: a production module imports {imported}"
        for name, module in modules.items()
        for imported, line in imported_names(module)
        if _under(imported, ("lab",))
    ]


CHECKS = {
    "cycles": cycle_problems,
    "stages": stage_problems,
    "judge is pure": purity_problems,
    "probes stay apart": probes_problems,
    "no lab in production": lab_problems,
}


@pytest.fixture(scope="module")
def project() -> dict[str, Module]:
    modules = load_modules(ROOT)
    assert len(modules) > 60, "the project's modules were not found"
    return modules


@pytest.mark.parametrize("check", list(CHECKS))
def test_the_house_plan_holds(project: dict[str, Module], check: str) -> None:
    assert CHECKS[check](project) == []


def test_every_monitor_module_belongs_to_a_stage(project: dict[str, Module]) -> None:
    homeless = [name for name in project if name.startswith("monitor.") and stage_of(name) is None]
    assert homeless == []


# Each check, shown a small tree with its fault, must find it.
FAULTY_TREES = {
    "cycles": {
        "monitor/judge/a.py": "from monitor.judge import b\n",
        "monitor/judge/b.py": "import monitor.judge.a\n",
    },
    "stages": {"monitor/judge/a.py": "from monitor.store.base import Store\n", "monitor/store/base.py": ""},
    "judge is pure": {
        "monitor/judge/a.py": "import datetime as dt\n\ndef f():\n    return dt.datetime.now()\n",
        "monitor/judge/b.py": "def g():\n    import requests\n",
    },
    "probes stay apart": {
        "probes/a.py": "from monitor.app.scan import run_scan\n",
        "monitor/app/scan.py": "",
    },
    "no lab in production": {"monitor/cli/a.py": "from lab.estate import Estate\n"},
}


@pytest.mark.parametrize("check", CHECKS)
def test_each_check_finds_its_fault(tmp_path: pathlib.Path, check: str) -> None:
    for relative, text in FAULTY_TREES[check].items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert CHECKS[check](load_modules(tmp_path)) != []


def test_type_checking_imports_count(tmp_path: pathlib.Path) -> None:
    (tmp_path / "monitor/judge").mkdir(parents=True)
    (tmp_path / "monitor/judge/a.py").write_text("from monitor.judge import b\n")
    (tmp_path / "monitor/judge/b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from monitor.judge import a\n"
    )
    assert cycle_problems(load_modules(tmp_path)) == [
        "modules that import each other: monitor.judge.a, monitor.judge.b"
    ]
