"""The data-plane verdict needs positive evidence: Key Vault's own error document.

Each answer is served by the lab's Key Vault data plane after its 401 challenge, to the
authenticated read (``authenticated_answers``), and read by
azure-keyvault-secrets over the probe's pinned connection. A 403 whose body is cut off, is not
JSON or is not Key Vault's shape proves nothing about the firewall: it is an error naming what
was seen, never "admitted" (which raised a critical KV101 on a vault that had refused the call).
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.credential import LabCredential
from lab.http import Fault, RecordingServer, Response
from lab.world import LabWorld
from monitor.azure_origin import origin_of
from monitor.config.policy import Vantage
from monitor.model import Verdict
from probes.options import ProbeOptions
from probes.pool import probe_vaults

JSON = {"Content-Type": "application/json; charset=utf-8"}
CUT_OFF = b'{"error":{"code":"Forbidden","message":"Client address is not authorized and caller is no'


def _forbidden(inner_code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": "Forbidden", "message": "Caller is not authorized to perform action."}
    if inner_code is not None:
        error["innererror"] = {"code": inner_code}
    return {"error": error}


@pytest.mark.parametrize(
    ("answer", "verdict", "seen"),
    [
        pytest.param(
            Response(403, CUT_OFF, JSON),
            Verdict.ERROR,
            'starting b\'{"error"',
            id="cut-off",
        ),
        pytest.param(
            Response(403, "<html>Forbidden</html>"),
            Verdict.ERROR,
            "text/plain",
            id="not-json",
        ),
        pytest.param(
            Response(403, {"message": "Forbidden"}),
            Verdict.ERROR,
            "application/json",
            id="other-shape",
        ),
        pytest.param(Response(403, b"", JSON), Verdict.ERROR, "0 bytes", id="empty"),
        pytest.param(Response(404, "Not Found"), Verdict.ERROR, "404 is not", id="404-not-key-vault"),
        pytest.param(
            Response(404, {"error": {"code": "VaultNotFound", "message": "No vault."}}),
            Verdict.ERROR,
            "No vault.",
            id="404-another-code",
        ),
        pytest.param(
            Response(403, _forbidden("AccessDenied")),
            Verdict.ADMITTED,
            "not authorized",
            id="rbac",
        ),
        pytest.param(
            Response(403, _forbidden(None)),
            Verdict.ADMITTED,
            "not authorized",
            id="no-inner",
        ),
        pytest.param(
            Response(403, _forbidden("ForbiddenByNsp")),
            Verdict.REFUSED_PERIMETER,
            "not authorized",
            id="nsp",
        ),
        pytest.param(
            Response(403, _forbidden("ForbiddenByConnection")),
            Verdict.REFUSED_PUBLIC_DISABLED,
            "not authorized",
            id="connection",
        ),
    ],
)
def test_the_verdict_is_what_key_vault_s_answer_proves(
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    credential: LabCredential,
    caplog: pytest.LogCaptureFixture,
    answer: Response,
    verdict: Verdict,
    seen: str,
) -> None:
    world.keyvault.authenticated_answers["kv-se-demo"] = answer
    try:
        (result,) = probe_vaults(
            ["kv-se-demo"], vantage=vantages["internet"], options=options, credential=credential
        )
    finally:
        world.keyvault.authenticated_answers.clear()

    assert result.verdict is verdict  # kv-se-demo's firewall is open: left alone, it is admitted
    assert result.data_plane is not None and result.data_plane.status_code == answer.status
    assert seen in (result.data_plane.message or "")
    # The SDK's failsafe deserialization logs a traceback for such bodies: not on a user's terminal.
    assert not [r for r in caplog.records if "failsafe" in r.getMessage()]


# Key Vault's answer for a secret that does not exist: from the vault, proof the network let the
# caller in; from any other host, proof of nothing.
_SECRET_NOT_FOUND = Response(404, {"error": {"code": "SecretNotFound", "message": "A secret was not found."}})


@pytest.mark.parametrize("after_challenge", [True, False], ids=["authenticated-read", "first-request"])
def test_a_redirect_to_another_host_is_an_error_never_a_verdict(
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    credential: LabCredential,
    after_challenge: bool,
) -> None:
    with RecordingServer(answer=_SECRET_NOT_FOUND) as elsewhere:
        if after_challenge:  # the token's own request answered with a redirect
            world.keyvault.authenticated_answers["kv-se-demo"] = Response(
                307, None, {"Location": f"{elsewhere.url}/secrets/kvmon-probe"}
            )
        else:  # the challenge request, before any token
            for server in world.keyvault.servers.values():
                server.inject(r"^/secrets/", Fault(status=302, redirect_to=elsewhere.url, times=0))
        try:
            (result,) = probe_vaults(
                ["kv-se-demo"], vantage=vantages["internet"], options=options, credential=credential
            )
        finally:
            world.keyvault.authenticated_answers.clear()
            for server in world.keyvault.servers.values():
                server.clear_faults()

    assert elsewhere.requests == [] and elsewhere.authorization_headers == []
    assert result.verdict is Verdict.ERROR
    assert result.data_plane is not None and result.data_plane.verdict is Verdict.ERROR
    assert f"refused to follow a redirect to {origin_of(elsewhere.url)}" in (result.data_plane.message or "")
