"""A storage account's endpoint hosts and private link zones, per sub-resource and cloud."""

from __future__ import annotations

import pytest

from monitor.model_storage import StorageSubresource
from monitor.naming.storage import (
    PRODUCTION_SUFFIXES,
    checked_suffix,
    endpoint_host,
    parse_endpoint_host,
    private_link_zone,
)


@pytest.mark.parametrize(
    ("subresource", "suffix", "host", "zone"),
    [
        (
            StorageSubresource.BLOB,
            "core.windows.net",
            "sa1.blob.core.windows.net",
            "privatelink.blob.core.windows.net",
        ),
        (
            StorageSubresource.DFS,
            "core.windows.net",
            "sa1.dfs.core.windows.net",
            "privatelink.dfs.core.windows.net",
        ),
        (
            StorageSubresource.FILE,
            "core.chinacloudapi.cn",
            "sa1.file.core.chinacloudapi.cn",
            "privatelink.file.core.chinacloudapi.cn",
        ),
        (
            StorageSubresource.QUEUE,
            "core.usgovcloudapi.net",
            "sa1.queue.core.usgovcloudapi.net",
            "privatelink.queue.core.usgovcloudapi.net",
        ),
        (
            StorageSubresource.TABLE,
            "core.windows.net",
            "sa1.table.core.windows.net",
            "privatelink.table.core.windows.net",
        ),
        (
            StorageSubresource.WEB,
            "core.windows.net",
            "sa1.web.core.windows.net",
            "privatelink.web.core.windows.net",
        ),
        (
            StorageSubresource.BLOB_SECONDARY,
            "core.windows.net",
            "sa1-secondary.blob.core.windows.net",
            "privatelink.blob.core.windows.net",
        ),
    ],
)
def test_each_subresource_has_its_host_and_zone(
    subresource: StorageSubresource, suffix: str, host: str, zone: str
) -> None:
    assert endpoint_host("sa1", subresource, suffix) == host
    assert private_link_zone(subresource, suffix) == zone
    parsed = parse_endpoint_host(host.upper() + ".", suffixes=PRODUCTION_SUFFIXES)
    assert (parsed.account, parsed.subresource, parsed.suffix) == ("sa1", subresource, suffix)
    assert parsed.hostname == host


def test_the_suffix_and_the_name_are_checked() -> None:
    assert checked_suffix(" .Core.Lab.Test. ") == "core.lab.test"
    with pytest.raises(ValueError, match=r"not a storage DNS suffix: 'vault\.azure\.net'"):
        checked_suffix("vault.azure.net")
    with pytest.raises(ValueError, match="not a storage account name"):
        endpoint_host("Sa_1", StorageSubresource.BLOB, "core.windows.net")
    with pytest.raises(ValueError, match="not under a storage DNS suffix"):
        parse_endpoint_host("sa1.blob.core.example.org", suffixes=PRODUCTION_SUFFIXES)
    with pytest.raises(ValueError, match="'mail' is not a storage sub-resource"):
        parse_endpoint_host("sa1.mail.core.windows.net", suffixes=PRODUCTION_SUFFIXES)
    with pytest.raises(ValueError, match="not a storage account name"):
        parse_endpoint_host("a.blob.core.windows.net", suffixes=PRODUCTION_SUFFIXES)
