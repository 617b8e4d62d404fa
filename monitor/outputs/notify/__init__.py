"""Notifications: what each channel is told about a scan (``compose``, pure) and getting it there
exactly once through the store's outbox (``deliver``).

The scan calls ``Notifier.notify(report, now=...)``; ``notifier_from_environ`` builds the
notifier from the app settings (``KVMON_CHANNELS``, see docs/webhook-schema.md).
"""

from monitor.outputs.notify.deliver import DeliveryPolicy, DeliveryReport, Notifier, notifier_from_environ

__all__ = [
    "DeliveryPolicy",
    "DeliveryReport",
    "Notifier",
    "notifier_from_environ",
]
