"""How far kvmon follows an answer's "there is more": repeated links and the page bound.

A listing that never ends is a listing never read: an ARM ``nextLink`` that pointed back at its
own page made 2,486 requests in two minutes against a hostile simulator and never finished. Every
paged read (ARM's ``nextLink``, Resource Graph's ``$skipToken``) goes through a ``PageGuard``,
which stops the read, with a ``PagingStopped`` the reader turns into a scan error, when

- a page's continuation repeats one already followed (a page linking to itself, or a ring of
  pages: the same link can only give the same pages again), or
- there would be more than ``MAX_PAGES`` pages (links that differ every time but never end).

``MAX_PAGES`` is 1,000 per listing (per subscription for ARM, per query for Resource Graph).
Resource Graph pages hold 1,000 rows, so the bound is a million rows per query; ARM does not
document the size of a vault list's pages, but at the lab's 100 a page (and Azure's are not
smaller in practice) it is 100,000 vaults in one subscription, far past any real one. Against a
server that answers at once it bounds the time a runaway listing can take to about a minute (the
observed loop ran at about 20 requests a second), where the loop ran until someone stopped it.
"""

from __future__ import annotations

from monitor.errors import SourceError

MAX_PAGES = 1000


class PagingStopped(SourceError):
    """A paged read was stopped before its end: the pages read are kept, the listing is incomplete."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class PageGuard:
    """Says, for each page, whether it is new and whether its continuation may be followed.

    ``what`` names the read in the error ("listing of subscription X", "query of 2
    subscriptions"); ``link`` names the continuation ("nextLink", "$skipToken"). A reader calls
    ``arrived`` when a page comes, before using it, and ``follow`` before asking for the next.
    """

    def __init__(self, what: str, *, link: str, max_pages: int = MAX_PAGES) -> None:
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, not {max_pages}")
        self.what = what
        self.link = link
        self.max_pages = max_pages
        self.pages = 0
        self._seen: dict[str, int] = {}  # continuation -> the page that gave it first

    def arrived(self, continuation: str | None) -> None:
        """A page came that says ``continuation`` is next (None or empty: the end). A page giving a
        continuation an earlier page gave is that earlier page again (the same place in the same
        listing): ``PagingStopped`` before its rows are used twice."""
        self.pages += 1
        first = self._seen.get(continuation) if continuation else None
        if first is not None:
            raise PagingStopped(
                f"{self.what} stopped: {self.link} repeated: page {self.pages} gave the {self.link} "
                f"page {first} gave (a loop); what the pages before it gave is kept, but the read is "
                "not complete",
                code="PageLoop",
            )

    def follow(self, continuation: str) -> None:
        """The page just used says ``continuation`` is next: ``PagingStopped`` when that would be
        more than ``max_pages`` pages."""
        if self.pages >= self.max_pages:
            raise PagingStopped(
                f"{self.what} stopped: more than {self.max_pages} pages, kvmon's bound on one "
                "listing; what the pages read gave is kept, but the read is not complete",
                code="TooManyPages",
            )
        self._seen.setdefault(continuation, self.pages)
