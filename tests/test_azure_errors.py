"""One Azure error helper for every reader: what Azure says comes out as one line, with its
status read right and nothing in it that must not leak (tokens, token claims, keys, signatures).

The helpers are checked on their own, then through each source's real SDK client against the
lab: ARM, Resource Graph, Log Analytics and the Key Vault data plane answer with an error whose
body carries every kind of secret, and each source's description of it must carry none.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from lab.arm import ArmEmulator
from lab.credential import LabCredential
from lab.estate import LAB_PRIVATE_RANGES, PUBLIC_INGRESS, WALKTHROUGH_WORKSPACE, Estate, walkthrough_estate
from lab.http import Fault
from lab.loganalytics import LogAnalyticsEmulator
from lab.resourcegraph import ResourceGraphEmulator
from lab.services import walkthrough_vantages
from lab.tls import LabPki
from lab.world import LabWorld
from monitor.azure_errors import (
    MESSAGE_LIMIT,
    REDACTED,
    describe_azure_error,
    describe_exception,
    error_code,
    first_line,
    redact,
    service_error,
)
from monitor.cli import common
from monitor.model import Verdict
from monitor.netaddr import AddressSpace
from monitor.sources.arm import ArmInventory
from monitor.sources.logs import LogsReader
from monitor.sources.resource_graph import ResourceGraphInventory
from probes.pool import probe_vaults
from tests.conftest import REPO
from tests.probes.conftest import lab_options

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000e1"

# What an error body may echo. None of these may survive a description.
JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJhcHBpZCI6IjBmMWUyZDNjIiwib2lkIjoiOWE4YjdjNmQifQ"
    ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1pc3N1ZXI"
)
OPAQUE_TOKEN = "pF3kq9Lw2Mx8Rz7Vb4Nc6Jt1Hs5Gd0Ya"
SAS_SIGNATURE = "Zm9vYmFyYmF6cXV4c2lnbmF0dXJl%3D"
ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LW9mLXRoZS1zdG9yYWdl=="
CLAIM_APP_ID = "0f1e2d3c-0000-4000-8000-00000000a991"
SECOND_LINE = "the second line of the message"
LEAKS = (JWT, OPAQUE_TOKEN, SAS_SIGNATURE, ACCOUNT_KEY, CLAIM_APP_ID, SECOND_LINE)

# One line holding every kind, then a second line: what reaches a description is the first line,
# redacted.
LEAKY_MESSAGE = (
    f"The token {JWT} was refused (Authorization: Bearer {OPAQUE_TOKEN}); "
    f"see https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig={SAS_SIGNATURE}&se=2030 and "
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};EndpointSuffix=x "
    f"Caller: appid={CLAIM_APP_ID};oid=9a8b7c6d;iss=https://sts.windows.net/t/\r\n{SECOND_LINE}"
)


def assert_redacted(text: str | None) -> None:
    assert text is not None
    assert "\n" not in text and "\r" not in text
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked: {text!r}"
    assert REDACTED in text


class _Response:
    """The parts of an azure-core response that ``HttpResponseError`` reads."""

    def __init__(self, status: int, body: Any, reason: str = "Forbidden") -> None:
        self.status_code = status
        self.reason = reason
        self._body = json.dumps(body) if body is not None else ""

    def text(self, encoding: str | None = None) -> str:
        return self._body


def http_error(status: int, body: Any, reason: str = "Forbidden") -> HttpResponseError:
    return HttpResponseError(response=_Response(status, body, reason))  # type: ignore[arg-type]


# -- the helpers ---------------------------------------------------------------------------------


def test_redact_hides_tokens_claims_keys_and_signatures() -> None:
    text = redact(LEAKY_MESSAGE)
    for leak in LEAKS[:-1]:
        assert leak not in text
    assert f"Bearer {REDACTED}" in text and f"AccountKey={REDACTED};" in text
    assert f"sig={REDACTED}&se=2030" in text and f"Caller: {REDACTED}" in text
    assert "AccountName=acct" in text and "sv=2022-11-02" in text  # what is not secret stays
    assert redact(text) == text


def test_redact_keeps_words_that_only_name_a_token_scheme() -> None:
    message = "AKV10000: Request is missing a Bearer or PoP token. The caller is not a trusted service."
    assert redact(message) == message


def test_first_line_is_the_first_non_blank_line_redacted_and_cut() -> None:
    assert first_line(f"\n  \n  {JWT} expired  \nmore") == f"{REDACTED} expired"
    assert first_line("   \n") == ""
    long = first_line("x" * 1000)
    assert len(long) == MESSAGE_LIMIT and long.endswith("…")
    assert first_line("y" * 50, limit=10) == "y" * 9 + "…"


def test_error_code_is_the_status_or_else_the_service_code() -> None:
    assert error_code(http_error(429, {"error": {"code": "TooManyRequests", "message": "m"}})) == "429"
    assert error_code(http_error(503, None, reason="Service Unavailable")) == "503"
    assert error_code(ClientAuthenticationError("no token")) is None


def test_describe_azure_error_reads_the_body_status_and_reason() -> None:
    body = {"error": {"code": "AuthorizationFailed", "message": "The client may not list vaults."}}
    assert (
        describe_azure_error(http_error(403, body)) == "AuthorizationFailed: The client may not list vaults."
    )
    assert describe_azure_error(http_error(403, {"error": {"message": "only a message"}})) == "only a message"
    assert describe_azure_error(http_error(502, None, reason="Bad Gateway")) == "HTTP 502 Bad Gateway"
    refused = ClientAuthenticationError("Authentication failed: connection refused\nattempts: ...")
    assert (
        describe_azure_error(refused) == "the token request failed: Authentication failed: connection refused"
    )
    # DefaultAzureCredential's message as azure-identity 1.27 writes it: the credential that was
    # available and failed says why.
    chain = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n"
        "\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment "
        "variables are not fully configured.\n"
        "Visit https://aka.ms/azsdk/python/identity/environmentcredential/troubleshoot to troubleshoot.\n"
        "\tManagedIdentityCredential: HTTPConnectionPool(host='127.0.0.1', port=8081): Read timed out. "
        "(read timeout=5)\n"
        "To mitigate this issue, please refer to the troubleshooting guidelines here at https://aka.ms/..."
    )
    assert describe_azure_error(chain) == (
        "the token request failed: ManagedIdentityCredential: HTTPConnectionPool(host='127.0.0.1', "
        "port=8081): Read timed out. (read timeout=5)"
    )
    assert describe_exception(ValueError("  ")) == "ValueError: no detail"


def test_the_most_specific_message_and_the_first_detail_are_kept() -> None:
    body = {
        "error": {
            "code": "BadArgumentError",
            "message": "The request had some invalid properties",
            "innererror": {
                "code": "SyntaxError",
                "message": "A recognition error occurred.",
                "innererror": {
                    "code": "SYN0002",
                    "message": "Query could not be parsed at '=' on line [1,3]",
                },
            },
            "details": [
                {"code": "InvalidQuery", "message": "Query is invalid.\nPlease check the documentation."},
                {"code": "Second", "message": "not shown"},
            ],
        }
    }
    assert service_error(http_error(400, body)) == (
        "BadArgumentError: Query could not be parsed at '=' on line [1,3] (InvalidQuery: Query is invalid.)"
    )
    assert service_error(http_error(400, None)) is None


def test_a_long_or_multi_line_service_message_is_one_line() -> None:
    body = {"error": {"code": "Big", "message": "z" * 2000 + "\nand more", "details": [{"code": "D"}]}}
    described = describe_azure_error(http_error(500, body))
    assert len(described) == MESSAGE_LIMIT and "\n" not in described and described.startswith("Big: zzz")


def test_a_leaky_body_is_redacted_in_every_part_of_the_description() -> None:
    body = {
        "error": {
            "code": "Forbidden",
            "message": LEAKY_MESSAGE,
            "details": [{"code": "Inner", "message": f"Bearer {JWT}"}],
        }
    }
    described = describe_azure_error(http_error(403, body))
    assert_redacted(described)
    assert described.endswith(f"(Inner: Bearer {REDACTED})")
    assert_redacted(describe_exception(RuntimeError(LEAKY_MESSAGE)))


# -- every source, through its real client against the lab ------------------------------------------


def _leaky_fault(status: int = 403, **error: Any) -> Fault:
    return Fault(
        status=status, body={"error": {"code": "Forbidden", "message": LEAKY_MESSAGE, **error}}, times=0
    )


@pytest.fixture(scope="module")
def arm_and_graph() -> Iterator[tuple[ArmEmulator, ResourceGraphEmulator]]:
    estate = Estate()
    estate.add_subscription(SUBSCRIPTION)
    with ArmEmulator(estate) as arm:
        graph = ResourceGraphEmulator(estate, server=arm.server).start()
        yield arm, graph
        arm.server.clear_faults()


def test_arm_describes_a_leaky_refusal_redacted(
    arm_and_graph: tuple[ArmEmulator, ResourceGraphEmulator], pki: LabPki
) -> None:
    arm, _ = arm_and_graph
    arm.server.inject(f"(?i)^/subscriptions/{SUBSCRIPTION}/", _leaky_fault())
    try:
        inventory = ArmInventory(
            LabCredential(), arm_endpoint=arm.url, connection_verify=pki.ca_path, retry_total=0
        )
        [error] = inventory.list_vaults([SUBSCRIPTION]).errors
    finally:
        arm.server.clear_faults()
    assert (error.source, error.code) == ("arm", "403")
    assert error.message.startswith("Forbidden: The token ")
    assert_redacted(error.message)


def test_resource_graph_describes_a_leaky_refusal_redacted(
    arm_and_graph: tuple[ArmEmulator, ResourceGraphEmulator], pki: LabPki
) -> None:
    _, graph = arm_and_graph
    # Resource Graph's own message says little; the reason is in the first detail.
    body = {
        "error": {
            "code": "BadRequest",
            "message": f"Please provide below info when asking for support: token {JWT}",
            "details": [{"code": "InvalidQuery", "message": LEAKY_MESSAGE}],
        }
    }
    graph.server.inject(
        "^/providers/Microsoft.ResourceGraph/resources$", Fault(status=400, body=body, times=0)
    )
    try:
        inventory = ResourceGraphInventory(
            LabCredential(), arm_endpoint=graph.url, connection_verify=pki.ca_path, retry_total=0
        )
        [error] = inventory.list_vaults([SUBSCRIPTION]).errors
    finally:
        graph.server.clear_faults()
    assert (error.source, error.code) == ("resource-graph", "400")
    assert error.message.startswith(
        f"BadRequest: Please provide below info when asking for support: token {REDACTED} (InvalidQuery: The token "
    )
    assert_redacted(error.message)


def test_log_analytics_describes_a_leaky_refusal_redacted(pki: LabPki) -> None:
    estate = walkthrough_estate()
    vault = estate.vault_by_name("kv-se-demo")
    assert vault is not None
    now = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
    with LogAnalyticsEmulator(estate) as emulator:
        emulator.server.inject(
            r"/query$", _leaky_fault(innererror={"code": "Inner", "message": LEAKY_MESSAGE})
        )
        reader = LogsReader(
            LabCredential(),
            endpoint=emulator.endpoint,
            connection_verify=pki.ca_path,
            address_space=AddressSpace.with_extra(LAB_PRIVATE_RANGES),
            retry_total=0,
        )
        with reader:
            result = reader.read_workspace(
                WALKTHROUGH_WORKSPACE, [vault["id"]], window_start=now - dt.timedelta(hours=1), window_end=now
            )
    [error] = result.errors
    assert (error.source, error.code) == ("logs", "403")
    assert error.message.startswith("query failed (HTTP 403): Forbidden: The token ")
    assert_redacted(error.message)
    [evidence] = result.evidence.values()
    assert_redacted(evidence.notes[0])


def test_the_data_plane_describes_a_leaky_refusal_redacted() -> None:
    with LabWorld(walkthrough_estate()) as world:
        world.keyvault.servers[PUBLIC_INGRESS].inject(
            r"^/secrets/", _leaky_fault(innererror={"code": "ForbiddenByFirewall"})
        )
        internet = next(v for v in walkthrough_vantages(resolver=world.resolver) if v.name == "internet")
        [result] = probe_vaults(
            ["kv-se-demo"], vantage=internet, options=lab_options(world), credential=LabCredential()
        )
    assert result.data_plane is not None
    assert (result.data_plane.status_code, result.verdict) == (403, Verdict.REFUSED_FIREWALL)
    assert result.data_plane.message is not None and result.data_plane.message.startswith("The token ")
    assert_redacted(result.data_plane.message)


def test_the_clis_line_for_an_unexpected_failure_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise RuntimeError(LEAKY_MESSAGE)

    assert common.run(lambda: argparse.Namespace(handler=handler, debug=False)) == common.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("kvmon: internal error: RuntimeError: The token ")
    assert_redacted(err.rstrip("\n"))


def test_describing_an_error_imports_no_sdk() -> None:
    # The CLI describes unexpected failures with this module; azure-core alone would cost every
    # command a tenth of a second.
    code = "import sys, monitor.azure_errors as e; e.first_line('x'); print('azure' in sys.modules)"
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert answer.stdout.strip() == "False"
