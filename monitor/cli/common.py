"""What every command shares: exit codes, user errors, the one place errors become exit codes,
output to a terminal or a pipe."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from monitor.azure_errors import first_line
from monitor.errors import ConfigurationError, InputError, KvmonError, SourceError, StoreError

EXIT_OK = 0
EXIT_FINDINGS = 1  # findings at or above --fail-on, and only that
EXIT_USAGE = 2  # usage, input or configuration error
EXIT_INCOMPLETE = 3  # the scan was not recorded, or evidence could not be read
EXIT_INTERNAL = 70  # an unexpected failure: a bug (EX_SOFTWARE of sysexits.h)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_CLOSED_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE, as a shell reports it)


class UsageError(InputError):
    """A mistake the user can fix (bad flag, bad file, bad value): one line, exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() reports every error the same way."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def run(parse: Callable[[], argparse.Namespace]) -> int:
    """Parse the command line, run the chosen command's handler and turn whatever it raises into
    one line on stderr and the exit code for its kind (``exit_code_for``)."""
    args: argparse.Namespace | None = None
    try:
        args = parse()
        code = int(args.handler(args))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("kvmon: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (| head): nothing to say. Point stdout at devnull so the
        # interpreter's final flush of what is still buffered does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    except Exception as raised:
        exc = _missing_extra(raised)
        debug = bool(getattr(args, "debug", False))
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(_error_line(exc, debug=debug), file=sys.stderr)
        return exit_code_for(exc)


def _missing_extra(exc: Exception) -> Exception:
    """rich draws the terminal tables and comes with the cli extra, not with the Functions package:
    without it, say how to install it rather than a bare import failure."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "rich":
        return ConfigurationError(
            "terminal tables need kvmon's cli extra: pip install 'kvmon[cli]' (or choose --format json)"
        )
    return exc


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a failure: 2 for what the user or operator can fix, 3 when the scan was
    not recorded or evidence is unreadable, 70 for anything kvmon did not raise on purpose."""
    if isinstance(exc, InputError | ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, StoreError | SourceError):
        return EXIT_INCOMPLETE
    return EXIT_INTERNAL


def _error_line(exc: BaseException, *, debug: bool) -> str:
    if isinstance(exc, KvmonError):
        return f"kvmon: error: {exc}"
    text = first_line(str(exc))  # redacted: an SDK's exception may quote a token or a key
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"kvmon: internal error: {described}{hint}"


def is_terminal() -> bool:
    return sys.stdout.isatty()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
