"""The Functions app against the lab and Azurite: tests/functions' own fixtures."""

from tests.functions.conftest import app_settings, lab

__all__ = ["app_settings", "lab"]
