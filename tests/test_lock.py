"""requirements.txt, what the Functions package installs, is the pinned closure of pyproject's
runtime dependencies, and the suite runs on exactly those pins (``make`` installs them first)."""

from __future__ import annotations

import tomllib
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

# The Functions runtime (infra/modules/function-app.bicep), where markers are evaluated.
FUNCTIONS_RUNTIME = default_environment() | {"sys_platform": "linux", "platform_system": "Linux", "extra": ""}


def pins() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for number, raw in enumerate((REPO / "requirements.txt").read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        assert separator and version.strip(), f"requirements.txt line {number} is not pinned with ==: {raw!r}"
        pinned[canonicalize_name(name)] = version.strip()
    return pinned


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def runtime_requirements(requirements: list[str]) -> list[Requirement]:
    parsed = [Requirement(text) for text in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(FUNCTIONS_RUNTIME)]


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    for requirement in runtime_requirements(project()["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in pinned, (
            f"{requirement.name} (pyproject.toml) is not in requirements.txt: run make lock"
        )
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.txt pins {name}=={pinned[name]}, outside pyproject.toml's {requirement}: run make lock"
        )


def test_the_lock_is_the_closure_of_the_runtime_dependencies_nothing_more() -> None:
    closure: set[str] = set()
    todo = runtime_requirements(project()["dependencies"])
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in closure:
            continue
        closure.add(name)
        todo.extend(runtime_requirements(metadata.requires(name) or []))

    assert set(pins()) == closure, "requirements.txt is stale: run make lock"


def test_the_suite_runs_on_the_pinned_versions() -> None:
    installed = {name: metadata.version(name) for name in pins()}
    assert installed == pins(), "the .venv differs from requirements.txt: run make install"


def test_the_cli_and_the_lab_stay_out_of_the_functions_package() -> None:
    optional = project()["optional-dependencies"]
    kept_out = {canonicalize_name(Requirement(text).name) for text in optional["cli"] + optional["dev"]}
    runtime = {canonicalize_name(Requirement(text).name) for text in project()["dependencies"]}
    assert "rich" in kept_out
    assert not (kept_out - runtime) & set(pins())
