"""Azure Storage's names: the storage account name rule."""

from __future__ import annotations

import re

# Microsoft.Storage/storageAccounts: 3-24 characters, lower-case letters and digits only.
STORAGE_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
