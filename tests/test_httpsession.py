"""SettledSession gives what requests' own session gives for the environment's proxy and CA
settings, read once per host."""

from __future__ import annotations

import pytest
import requests

from monitor.httpsession import SettledSession

URLS = ("https://kv-app.vault.azure.net/secrets/x", "https://127.0.0.1:8443/x", "http://sink.example/hook")


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3129")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")


@pytest.mark.parametrize("verify", [True, None, False, "/etc/ssl/lab-ca.pem"])
@pytest.mark.parametrize("proxies", [None, {}, {"https": "http://explicit.example:8080"}])
def test_the_settings_are_requests_own(proxied: None, verify: object, proxies: dict[str, str] | None) -> None:
    settled, plain = SettledSession(), requests.Session()
    for url in URLS:
        for _ in range(2):  # the second time from what the first one read
            ours = settled.merge_environment_settings(url, _copy(proxies), None, verify, None)
            theirs = plain.merge_environment_settings(url, _copy(proxies), None, verify, None)
            assert ours == theirs
    # requests' own CA setting wins over verify=True, not over a bundle the caller named.
    assert (
        settled.merge_environment_settings(URLS[0], None, None, True, None)["verify"]
        == "/etc/ssl/corporate.pem"
    )
    assert settled.merge_environment_settings(URLS[0], None, None, "/lab.pem", None)["verify"] == "/lab.pem"


def test_a_hosts_settings_are_read_once_and_a_callers_change_stays_its_own(
    proxied: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = SettledSession()
    first = session.merge_environment_settings(URLS[0], None, None, True, None)
    first["proxies"]["https"] = "changed by a caller"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/other.pem")
    # Read once: a worker's environment does not change while it runs.
    again = session.merge_environment_settings(URLS[0], None, None, True, None)
    assert again["verify"] == "/etc/ssl/corporate.pem"
    assert again["proxies"].get("https") != "changed by a caller"
    # Another host reads the environment as it is now.
    assert (
        session.merge_environment_settings(URLS[2], None, None, True, None)["verify"] == "/etc/ssl/other.pem"
    )


def _copy(proxies: dict[str, str] | None) -> dict[str, str] | None:
    return dict(proxies) if proxies is not None else None
