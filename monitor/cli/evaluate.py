"""``kvmon evaluate``: judge offline vault and storage account JSON against the rule catalog and a
baseline.

Also the option handling ``kvmon scan`` shares: ``add_baseline_argument`` / ``load_baseline_option``
for ``--baseline``, and ``add_output_arguments`` / ``emit_report`` for ``--format``, ``--fail-on``
and ``--output`` with the exit code that goes with them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from monitor.cli import common
from monitor.config.baseline import Baseline, BaselineError, load_baseline
from monitor.errors import InputError
from monitor.judge.evaluate import ExpiredSuppression, evaluate
from monitor.judge.rules.base import Facts, StorageFacts, VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model import ErrorSource, Finding, FindingChange, ScanError, Severity, VaultPosture
from monitor.model_storage import StorageAccountPosture
from monitor.outputs.formats import FORMATS, Observed, SourceLocation, at_or_above, write_report
from monitor.sources.documents import load_resource_file

DEFAULT_FAIL_ON = Severity.HIGH


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Judge Key Vaults and storage accounts read from JSON files (an object as 'az keyvault show' "
        "or 'az storage account show' prints it, a JSON array as 'az ... list' prints it, or an ARM "
        'list page {"value": [...]}; each entry\'s type, or its id, says which service it is) against '
        "the rule catalog and, when given, a baseline. Exit 0 when nothing active is at or above "
        "--fail-on, 1 when something is, 2 on a usage or input error."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="vault or storage account JSON files")
    add_baseline_argument(parser)
    add_output_arguments(parser)
    parser.set_defaults(handler=run)


# -- shared with kvmon scan ----------------------------------------------------------------------------


def add_baseline_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline", metavar="BASELINE.yaml", help="the baseline to judge against (see examples/)"
    )


def load_baseline_option(path: str | None) -> Baseline:
    """The baseline ``--baseline`` names, or ``Baseline.none()``; a bad file is a ``UsageError``."""
    if path is None:
        return Baseline.none()
    try:
        return load_baseline(path, known_rules=RULES_BY_ID.keys())
    except BaselineError as exc:
        raise common.UsageError(str(exc)) from None


def severity_argument(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument(
        "--fail-on",
        type=severity_argument,
        default=DEFAULT_FAIL_ON,
        metavar="SEVERITY",
        help=(
            "exit 1 when an unsuppressed finding is at or above this severity: "
            f"{', '.join(s.value for s in Severity)} (default: {DEFAULT_FAIL_ON.value})"
        ),
    )
    parser.add_argument("--output", metavar="FILE", help="write the report here instead of standard output")


def emit_report(
    args: argparse.Namespace,
    findings: Sequence[Finding],
    *,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
    sources: Mapping[str, SourceLocation] | None = None,
    source_root: str | None = None,
    changes: Sequence[FindingChange] | None = None,
    observed: Observed | None = None,
) -> int:
    """Write the report as ``args.format`` to ``args.output`` (or stdout); the exit code for ``args.fail_on``."""

    def write(stream: TextIO, *, terminal: bool) -> None:
        write_report(
            args.format,
            findings,
            stream=stream,
            terminal=terminal,
            errors=errors,
            expired=expired,
            sources=sources,
            source_root=source_root,
            changes=changes,
            observed=observed,
        )

    if args.output:
        output = Path(args.output)
        try:
            with output.open("w", encoding="utf-8") as stream:
                write(stream, terminal=False)
        except OSError as exc:
            raise common.UsageError(f"{output}: cannot write the report: {exc.strerror or exc}") from None
    else:
        try:
            write(sys.stdout, terminal=common.is_terminal())
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (| head): not an error of ours. Point stdout at devnull so the
            # interpreter's final flush does not raise again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return common.EXIT_FINDINGS if at_or_above(findings, args.fail_on) else common.EXIT_OK


# -- the command ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    baseline = load_baseline_option(args.baseline)
    postures: dict[str, VaultPosture | StorageAccountPosture] = {}
    sources: dict[str, SourceLocation] = {}
    errors: list[ScanError] = []
    for name in args.files:
        path = Path(name)
        try:
            loaded = load_resource_file(path)
        except InputError as exc:
            raise common.UsageError(str(exc)) from None
        errors += [
            ScanError(source=ErrorSource.INPUT, scope=str(path), message=problem)
            for problem in loaded.problems
        ]
        lines, line_count = _id_lines(path)
        resources: list[VaultPosture | StorageAccountPosture] = [*loaded.vaults, *loaded.accounts]
        for posture in resources:
            errors += [
                ScanError(source=ErrorSource.INPUT, scope=f"{path}: {posture.name}", message=problem)
                for problem in posture.problems
            ]
            if posture.key in postures:
                what = "storage account" if isinstance(posture, StorageAccountPosture) else "vault"
                errors.append(
                    ScanError(
                        source=ErrorSource.INPUT,
                        scope=str(path),
                        message=f"{what} {posture.id} was already read from {sources[posture.key].uri}; "
                        "this copy is ignored",
                    )
                )
                continue
            postures[posture.key] = posture
            line = lines.get(posture.key)
            sources[posture.key] = SourceLocation(
                uri=_uri(path),
                start_line=line or 1,
                end_line=line or line_count,
            )
    facts: list[Facts] = [
        StorageFacts(posture=posture, policy=baseline.policy_for(posture))
        if isinstance(posture, StorageAccountPosture)
        else VaultFacts(
            posture=posture,
            policy=baseline.policy_for(posture),
            logs_refused_threshold=baseline.logs_refused_threshold,
        )
        for posture in postures.values()
    ]
    # The clock is read here, in the shell; evaluation itself is pure.
    result = evaluate(facts, today=dt.date.today())
    return emit_report(
        args,
        result.findings,
        errors=errors,
        expired=result.expired_suppressions,
        sources=sources,
        source_root=Path.cwd().as_uri() + "/",
    )


def _uri(path: Path) -> str:
    """Relative to the working directory (the SARIF source root) when inside it, else a file URI."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_uri()


_ID_LINE = re.compile(
    r'"id"\s*:\s*"(/subscriptions/[^"]+?/(?:vaults|storageAccounts)/[^"/]+)"', re.IGNORECASE
)


def _id_lines(path: Path) -> tuple[dict[str, int], int | None]:
    """The line each vault's or account's ``"id"`` is on (by lower-cased id) and the file's line count, for
    SARIF locations. Best effort: the file was already read and judged; this only points at it."""
    try:
        data = path.read_bytes()
        text = data.decode(json.detect_encoding(data))
    except (OSError, UnicodeDecodeError):
        return {}, None
    lines: dict[str, int] = {}
    for match in _ID_LINE.finditer(text):
        lines.setdefault(match.group(1).lower(), text.count("\n", 0, match.start()) + 1)
    return lines, max(1, len(text.splitlines()))
