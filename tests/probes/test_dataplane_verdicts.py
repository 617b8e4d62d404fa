"""The data-plane verdict needs positive evidence: Key Vault's own error document.

Each answer is served by the lab's Key Vault data plane (a fault on its secret route) and read by
azure-keyvault-secrets over the probe's pinned connection. A 403 whose body is cut off, is not
JSON or is not Key Vault's shape proves nothing about the firewall: it is an error naming what
was seen, never "admitted" (which raised a critical KV101 on a vault that had refused the call).
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.credential import LabCredential
from lab.estate import PUBLIC_INGRESS
from lab.http import Fault
from lab.world import LabWorld
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
    ("fault", "verdict", "seen"),
    [
        pytest.param(
            Fault(status=403, body=CUT_OFF, headers=JSON, times=0),
            Verdict.ERROR,
            'starting b\'{"error"',
            id="cut-off",
        ),
        pytest.param(
            Fault(status=403, body="<html>Forbidden</html>", times=0),
            Verdict.ERROR,
            "text/plain",
            id="not-json",
        ),
        pytest.param(
            Fault(status=403, body={"message": "Forbidden"}, times=0),
            Verdict.ERROR,
            "application/json",
            id="other-shape",
        ),
        pytest.param(
            Fault(status=403, body=b"", headers=JSON, times=0), Verdict.ERROR, "0 bytes", id="empty"
        ),
        pytest.param(
            Fault(status=404, body="Not Found", times=0), Verdict.ERROR, "404 is not", id="404-not-key-vault"
        ),
        pytest.param(
            Fault(status=404, body={"error": {"code": "VaultNotFound", "message": "No vault."}}, times=0),
            Verdict.ERROR,
            "No vault.",
            id="404-another-code",
        ),
        pytest.param(
            Fault(status=403, body=_forbidden("AccessDenied"), times=0),
            Verdict.ADMITTED,
            "not authorized",
            id="rbac",
        ),
        pytest.param(
            Fault(status=403, body=_forbidden(None), times=0),
            Verdict.ADMITTED,
            "not authorized",
            id="no-inner",
        ),
        pytest.param(
            Fault(status=403, body=_forbidden("ForbiddenByNsp"), times=0),
            Verdict.REFUSED_PERIMETER,
            "not authorized",
            id="nsp",
        ),
        pytest.param(
            Fault(status=403, body=_forbidden("ForbiddenByConnection"), times=0),
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
    fault: Fault,
    verdict: Verdict,
    seen: str,
) -> None:
    server = world.keyvault.servers[PUBLIC_INGRESS]
    server.inject(r"^/secrets/", fault)
    try:
        (result,) = probe_vaults(
            ["kv-se-demo"], vantage=vantages["internet"], options=options, credential=credential
        )
    finally:
        server.clear_faults()

    assert result.verdict is verdict  # kv-se-demo's firewall is open: unfaulted, it is admitted
    assert result.data_plane is not None and result.data_plane.status_code == fault.status
    assert seen in (result.data_plane.message or "")
    # The SDK's failsafe deserialization logs a traceback for such bodies: not on a user's terminal.
    assert not [r for r in caplog.records if "failsafe" in r.getMessage()]
