"""``kvmon notify-test --channel NAME``: send a sample message to one channel to check the wiring."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os

from monitor.cli import common
from monitor.config.channels import ALL_EVENTS, ChannelConfigError, load_channels
from monitor.config.settings import Settings, SettingsError
from monitor.model import Severity
from monitor.outputs.notify.compose import compose, message_id, sample_digest
from monitor.outputs.notify.deliver import DeliveryPolicy, Sender, SystemClock, default_session
from monitor.outputs.notify.redact import redacting_logs

EXIT_NOT_DELIVERED = 1


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Send a sample message (one opened, one changed, one resolved change) to one channel "
        "from KVMON_CHANNELS, whatever its filters, and say whether it arrived. Exit 1 when it did not."
    )
    parser.add_argument(
        "--channel", required=True, metavar="NAME", help="the channel's name in KVMON_CHANNELS"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_environ(os.environ)
        channels = load_channels(os.environ)
    except (SettingsError, ChannelConfigError) as exc:
        raise common.UsageError(str(exc)) from None
    if not channels:
        raise common.UsageError("no channels are configured: set KVMON_CHANNELS")
    channel = next((c for c in channels if c.name == args.channel), None)
    if channel is None:
        names = ", ".join(c.name for c in channels)
        raise common.UsageError(f"no channel named {args.channel!r} in KVMON_CHANNELS; configured: {names}")
    # The sample must reach the channel whatever it filters, or the check would prove nothing.
    unfiltered = dataclasses.replace(
        channel, min_severity=Severity.INFO, events=ALL_EVENTS, vault_pattern="*"
    )
    digest = sample_digest(now=dt.datetime.now(dt.UTC))
    payload = compose(unfiltered, digest)
    assert payload is not None  # the sample has changes and nothing filters them
    with default_session(verify=settings.connection_verify) as session, redacting_logs(channel.secrets):
        sender = Sender(session=session, clock=SystemClock(), policy=DeliveryPolicy())
        result = sender.send(channel, payload, message_id=message_id(digest.scan_id, channel.name))
    outcome = {
        "channel": channel.name,
        "kind": channel.kind.value,
        "delivered": result.delivered,
        "status": result.status,
        "tries": result.attempts,
        "error": result.error,
    }
    if args.format == "json":
        common.print_json(outcome)
    elif result.delivered:
        print(
            f"channel {channel.name} ({channel.kind.value}): sample delivered (HTTP {result.status}, {_tries(result.attempts)})"
        )
    else:
        print(
            f"channel {channel.name} ({channel.kind.value}): sample NOT delivered after {_tries(result.attempts)}: {result.error}"
        )
    return common.EXIT_OK if result.delivered else EXIT_NOT_DELIVERED


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"
