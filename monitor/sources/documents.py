"""Offline resource documents of either service, told apart by themselves.

``load_resource_file`` reads one JSON file (a resource, an ARM list page, a JSON array, as ``az ... show``,
the REST API and ``az ... list`` write them) whose entries may be Key Vaults, storage accounts or both,
and hands each to its service's normaliser: by its ``type`` (``Microsoft.KeyVault/vaults``,
``Microsoft.Storage/storageAccounts``), else by the provider in its ``id`` (``az storage account show``
prints a ``type``; a hand-made document may have only the id). Anything else goes to the vault
normaliser, as it always has, which notes what it is not. Pure, except that it reads the one file named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.model import Service, VaultPosture
from monitor.model_storage import STORAGE_ACCOUNT_TYPE, StorageAccountPosture
from monitor.sources.armjson import lookup, read_entries
from monitor.sources.keyvault.normalise import VAULT_TYPE, InvalidVault, VaultFileError, normalise_vault
from monitor.sources.storage.normalise import InvalidStorageAccount, normalise_storage_account

_TYPES = {VAULT_TYPE.lower(): Service.KEYVAULT, STORAGE_ACCOUNT_TYPE.lower(): Service.STORAGE}
_PROVIDERS = {
    "/providers/microsoft.keyvault/vaults/": Service.KEYVAULT,
    "/providers/microsoft.storage/storageaccounts/": Service.STORAGE,
}


def service_of(raw: Any) -> Service | None:
    """The service a document belongs to: its ``type``, else its ``id``'s provider; None for neither."""
    if not isinstance(raw, Mapping):
        return None
    resource_type = lookup(raw, "type")
    if isinstance(resource_type, str) and resource_type.strip().lower() in _TYPES:
        return _TYPES[resource_type.strip().lower()]
    resource_id = lookup(raw, "id")
    if isinstance(resource_id, str):
        folded = resource_id.lower()
        for provider, service in _PROVIDERS.items():
            if provider in folded:
                return service
    return None


@dataclass
class ResourceDocuments:
    """What one file held: the postures of each service, and one message per entry that is neither."""

    vaults: list[VaultPosture] = field(default_factory=list)
    accounts: list[StorageAccountPosture] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_resource_file(path: Path | str) -> ResourceDocuments:
    """The Key Vaults and storage accounts in one offline JSON file. A malformed entry is reported as
    ``"FILE: value[INDEX]: reason"`` and does not hide the others; ``VaultFileError`` (an
    ``InputError``) when the file as a whole cannot be read."""
    documents = ResourceDocuments()
    entries = read_entries(
        Path(path), error=VaultFileError, noun="vault or storage account", plural="vaults or storage accounts"
    )
    for where, item in entries:
        service = service_of(item)
        try:
            if service is Service.STORAGE:
                documents.accounts.append(normalise_storage_account(item))
            else:
                # A vault, or a document of neither service: judged as a vault, as kvmon always has;
                # the vault normaliser says what is wrong with it (no id, another type).
                documents.vaults.append(normalise_vault(item))
        except (InvalidVault, InvalidStorageAccount) as exc:
            documents.problems.append(f"{where}: {exc}")
    return documents
