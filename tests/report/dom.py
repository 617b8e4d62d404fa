"""Read a report page back as a reader sees its text: the matrix cells, the finding rows, all text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class ReportDom:
    text: str = ""  # the body's text, whitespace collapsed
    cells: dict[tuple[str, str], str] = field(default_factory=dict)  # (vault, vantage) -> text
    finding_rules: list[str] = field(default_factory=list)  # rule ids of the findings rows, in order

    @classmethod
    def parse(cls, html: str) -> ReportDom:
        parser = _Parser()
        parser.feed(html)
        parser.close()
        return cls(
            text=_squash("".join(parser.body)),
            cells={key: _squash("".join(parts)) for key, parts in parser.cells.items()},
            finding_rules=parser.finding_rules,
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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
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
        if tag in ("style", "script"):
            self._in_style = False
        elif tag == "td":
            self._cell = None
        if tag in ("div", "p", "td", "th", "li", "tr"):
            self._text(" ")

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self._text(data)

    def _text(self, data: str) -> None:
        if self._in_body:
            self.body.append(data)
        if self._cell is not None:
            self.cells[self._cell].append(data)
