"""``kvmon report``: render a scan's HTML report from a report document or from the store."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.cli import common
from monitor.outputs.report import ReportDocumentError, render_html
from monitor.store.base import StoreUnavailable


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render the self-contained HTML report of a scan: from a report document (--input), "
        "or from the document the store kept for a scan (--scan ID; the latest scan by default)."
    )
    parser.add_argument(
        "--input", metavar="DOCUMENT.json", help="a report document (kvmon.report/v1) to render"
    )
    parser.add_argument(
        "--output", metavar="FILE.html", help="where to write the page (default: standard output)"
    )
    parser.add_argument("--scan", metavar="ID", help="the stored scan to render (default: the latest)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.input and args.scan:
        raise common.UsageError("--input and --scan are alternatives: give one of them")
    if args.input:
        source = args.input
        document = _read_document(Path(args.input))
    else:
        source = f"the stored report of scan {args.scan}" if args.scan else "the latest stored report"
        document = _stored_document(args.scan)
    try:
        page = render_html(document)
    except ReportDocumentError as exc:
        raise common.UsageError(f"{source}: not a kvmon report document: {exc}") from None
    if args.output:
        output = Path(args.output)
        try:
            output.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise common.UsageError(f"{output}: cannot write the report: {exc.strerror or exc}") from None
        print(f"kvmon: report written to {output}", file=sys.stderr)
    else:
        sys.stdout.write(page)
    return common.EXIT_OK


def _read_document(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise common.UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise common.UsageError(f"{path}: is a directory, not a report document") from None
    except UnicodeDecodeError:
        raise common.UsageError(f"{path}: not a text file (expected a JSON report document)") from None
    except OSError as exc:
        raise common.UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise common.UsageError(
            f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(document, dict):
        raise common.UsageError(f"{path}: not a kvmon report document: a report document is a JSON object")
    return document


def _stored_document(scan_id: str | None) -> Mapping[str, Any]:
    from monitor.store import store_from_environment

    try:
        document = store_from_environment(os.environ).load_report(scan_id)
    except StoreUnavailable as exc:
        raise common.UsageError(f"the store is unavailable: {exc}") from None
    if document is None:
        wanted = f"scan {scan_id}" if scan_id else "any scan"
        raise common.UsageError(
            f"the store holds no report for {wanted}: run 'kvmon scan' first, or pass --input"
        )
    return document
