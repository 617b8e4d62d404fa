"""Notifications: what each channel is told about a scan (``compose``) and getting it there
exactly once through the store's outbox (``deliver``)."""
