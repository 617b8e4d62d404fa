"""Read a report page back as a reader sees its text: the matrix cells, the finding rows, all text,
and what a browser lays out at first (the content of ``<template>`` elements is inert)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_TEMPLATE_CONTENT = re.compile(r"(<template\b[^>]*>).*?</template>", re.DOTALL)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class ReportDom:
    text: str = ""  # the body's text, whitespace collapsed
    cells: dict[tuple[str, str], str] = field(default_factory=dict)  # (vault, vantage) -> text
    finding_rules: list[str] = field(default_factory=list)  # rule ids of the findings rows, in order
    # What the browser lays out at first: nothing inside a <template> counts above or here.
    vault_rows: list[dict[str, str]] = field(default_factory=list)  # the matrix rows' data- attributes
    live_elements: int = 0  # elements outside any <template>
    templates: list[dict[str, str]] = field(default_factory=list)  # each <template>'s data- attributes
    scripts: list[dict[str, str]] = field(default_factory=list)  # each <script>'s attributes

    @classmethod
    def parse(cls, html: str) -> ReportDom:
        parser = _Parser()
        # A template's content is inert and kvmon nests none: drop it before parsing (a 10,000-vault
        # page is 50 MB of it), keeping each <template> tag and its attributes.
        parser.feed(_TEMPLATE_CONTENT.sub(r"\1</template>", html))
        parser.close()
        return cls(
            text=_squash("".join(parser.body)),
            cells={key: _squash("".join(parts)) for key, parts in parser.cells.items()},
            finding_rules=parser.finding_rules,
            vault_rows=parser.vault_rows,
            live_elements=parser.live_elements,
            templates=parser.templates,
            scripts=parser.scripts,
        )

    def cell(self, vault: str, vantage: str) -> str:
        return self.cells[(vault, vantage)]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.body: list[str] = []
        self.cells: dict[tuple[str, str], list[str]] = {}
        self.finding_rules: list[str] = []
        self._in_body = False
        self._in_style = False
        self._cell: tuple[str, str] | None = None
        self.vault_rows: list[dict[str, str]] = []
        self.live_elements = 0
        self.templates: list[dict[str, str]] = []
        self.scripts: list[dict[str, str]] = []
        self._template_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "template":
            self.templates.append({k[5:]: v or "" for k, v in attributes.items() if k.startswith("data-")})
            self._template_depth += 1
            return
        if self._template_depth:
            return
        self.live_elements += 1
        if tag == "script":
            self.scripts.append({k: v or "" for k, v in attributes.items()})
        if tag == "tr" and "vault-row" in (attributes.get("class") or "").split():
            self.vault_rows.append({k[5:]: v or "" for k, v in attributes.items() if k.startswith("data-")})
        if tag == "body":
            self._in_body = True
        elif tag in ("style", "script"):
            self._in_style = True
        elif tag == "td" and attributes.get("data-vault") and attributes.get("data-vantage"):
            self._cell = (attributes["data-vault"] or "", attributes["data-vantage"] or "")
            self.cells[self._cell] = []
        elif tag == "tr" and attributes.get("data-rule"):
            self.finding_rules.append(attributes["data-rule"] or "")
        if tag in ("br", "div", "p", "td", "th", "li", "tr", "h1", "h2", "h3"):
            self._text(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self._template_depth -= 1
            return
        if self._template_depth:
            return
        if tag in ("style", "script"):
            self._in_style = False
        elif tag == "td":
            self._cell = None
        if tag in ("div", "p", "td", "th", "li", "tr"):
            self._text(" ")

    def handle_data(self, data: str) -> None:
        if not self._in_style and not self._template_depth:
            self._text(data)

    def _text(self, data: str) -> None:
        if self._in_body:
            self.body.append(data)
        if self._cell is not None:
            self.cells[self._cell].append(data)
