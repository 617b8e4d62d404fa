"""One error hierarchy: every error kvmon raises on purpose is a ``KvmonError``.

The kinds below say what the person who sees the error can do about it. The CLI maps them to exit
codes in one place (``monitor.cli``) and the Functions app to HTTP statuses in one place
(``monitor.app.answers``); anything that is not a ``KvmonError`` is a bug, reported as one.
"""

from __future__ import annotations


class KvmonError(Exception):
    """Base of every error kvmon raises on purpose."""


class ConfigurationError(KvmonError):
    """What the operator stated (an app setting, the baseline, vantage points, channels) is invalid;
    the message names the setting or file, the field and the problem."""


class InputError(KvmonError):
    """Input to one command or request (a file, a flag, a parameter) is invalid; the message names it."""


class SourceError(KvmonError):
    """A source of evidence (ARM, Resource Graph, Log Analytics, a vantage point, a stored document)
    answered in a way kvmon cannot read: no verdict can rest on it."""


class StoreError(KvmonError):
    """The store cannot be reached or refused a write: the scan is not recorded."""
