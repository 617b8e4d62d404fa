"""No secret leaves kvmon: not in a log line, an error, a report, a stored record or an answer.

Scans run against the lab with every kind of secret kvmon holds in play: a signed webhook
(HMAC key) and the secret URLs of Teams, Slack and the webhook, an Azure Storage connection
string with its account key (Azurite), bearer tokens (the lab's credential, recording each token
it issues) and a remote vantage point's function key. Faults are injected so the error paths run
too (a webhook that keeps failing, throttling, a wrong function key, a store out of reach). Then
everything kvmon said is collected and searched for every secret and every telling fragment of
one: all log records at DEBUG (azure.core, urllib3 and kvmon's own), the CLI's stdout and
stderr, the ScanReport JSON, the HTML report, every entity in the store, the Functions app's
answers and the bodies the webhook receivers got.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
from azure.core.credentials import AccessToken
from azure.data.tables import TableServiceClient

from lab.azurite import DEV_ACCOUNT_KEY, azurite_missing_reason
from lab.credential import LabCredential
from lab.http import Fault
from lab.services import LabServices, _vantage_json
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanRequest, run_scan
from monitor.cli import main
from monitor.config.settings import Settings
from monitor.jsonable import to_jsonable
from monitor.outputs.report import build_report_document, render_html
from monitor.store import StoreUnavailable, open_store
from tests.faults.conftest import REMOTE_KEY, SUB_A, SUB_B, WEBHOOK_SECRET, RemoteVantage, fault_estate
from tests.functions.test_function_app import functions  # the app is indexed once per process

WRONG_KEY = "fnkey-Wr0ng-Remote-9Tq4Lm7Zp2"


class RecordingCredential(LabCredential):
    """The lab's token credential, remembering every token it issued (they must not leak)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token = super().get_token(*scopes, **kwargs)
        self.tokens.append(token.token)
        return token


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServices]:
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with LabServices(fault_estate(), azurite=True) as services:
        services.sinks.webhook_secret = WEBHOOK_SECRET
        yield services


def _environ(lab: LabServices, remote: RemoteVantage, silent: RemoteVantage) -> dict[str, str]:
    assert lab.azurite is not None
    environ = lab.environ(subscriptions=(SUB_A, SUB_B))
    environ.pop("KVMON_SQLITE_PATH", None)
    environ.pop("AzureWebJobsStorage", None)
    environ["KVMON_STORAGE"] = lab.azurite.connection_string
    environ["KVMON_CHANNELS"] = json.dumps(
        [
            {"name": "teams", "kind": "teams", "url_setting": "KVMON_TEAMS_URL"},
            {"name": "slack", "kind": "slack", "url_setting": "KVMON_SLACK_URL"},
            {
                "name": "siem",
                "kind": "webhook",
                "url_setting": "KVMON_SIEM_URL",
                "secret_setting": "KVMON_SIEM_SECRET",
            },
        ]
    )
    environ["KVMON_SIEM_URL"] = lab.sinks.webhook_url()
    environ["KVMON_SIEM_SECRET"] = WEBHOOK_SECRET
    vantages = [_vantage_json(v) for v in lab.vantages()]
    vantages.append(remote.vantage_json())
    vantages.append({**silent.vantage_json(), "key_setting": "KVMON_WRONG_KEY"})
    environ["KVMON_VANTAGES"] = json.dumps(vantages)
    environ["KVMON_OUTSIDE_KEY"] = REMOTE_KEY
    environ["KVMON_WRONG_KEY"] = WRONG_KEY
    return environ


def _secrets(environ: dict[str, str], credential: RecordingCredential) -> dict[str, str]:
    """Every secret, and the parts of a webhook URL that are its credential."""
    found: dict[str, str] = {
        "webhook signing secret": WEBHOOK_SECRET,
        "storage account key": DEV_ACCOUNT_KEY,
        "storage connection string": environ["KVMON_STORAGE"],
        "remote vantage function key": REMOTE_KEY,
        "wrong function key": WRONG_KEY,
    }
    teams, slack, siem = (
        urlsplit(environ[s]) for s in ("KVMON_TEAMS_URL", "KVMON_SLACK_URL", "KVMON_SIEM_URL")
    )
    found.update(
        {
            "Teams URL": environ["KVMON_TEAMS_URL"],
            "Teams URL signature": parse_qs(teams.query)["sig"][0],
            "Teams workflow id": teams.path.split("/")[2],
            "Slack URL": environ["KVMON_SLACK_URL"],
            "Slack URL path": slack.path,
            "Slack token": slack.path.rsplit("/", 1)[1],
            "webhook URL": environ["KVMON_SIEM_URL"],
            "webhook URL token": siem.path.rsplit("/", 1)[1],
        }
    )
    for index, token in enumerate(dict.fromkeys(credential.tokens)):
        found[f"bearer token {index}"] = token
        found[f"bearer token {index} claims"] = token.split(".")[1]
    return found


def _stored_entities(connection_string: str) -> str:
    with TableServiceClient.from_connection_string(connection_string) as service:
        dump = {
            table.name: [dict(entity) for entity in service.get_table_client(table.name).list_entities()]
            for table in service.list_tables()
        }
    return json.dumps(dump, default=str)


def _call(name: str, request: func.HttpRequest) -> str:
    response = functions()[name].get_user_function()(request)
    return f"{response.status_code} {response.get_body().decode('utf-8')}"


def test_no_secret_appears_in_any_log_output_report_record_or_answer(
    lab: LabServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    assert lab.azurite is not None
    credential = RecordingCredential()
    remote = RemoteVantage(lab)
    silent = RemoteVantage(lab, name="keyless")  # answers 401: its key setting holds the wrong key
    remote.server.start()
    silent.server.start()
    request.addfinalizer(remote.server.stop)
    request.addfinalizer(silent.server.stop)
    environ = _environ(lab, remote, silent)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.runtime.default_credential", lambda settings: credential)
    monkeypatch.setattr("monitor.app.deployment._CREDENTIAL", credential)
    caplog.set_level(logging.DEBUG)
    outputs: dict[str, str] = {}

    # The signed webhook fails every try of the first scan; Slack is throttled once.
    lab.sinks.fail("webhook", status=500, times=3)
    lab.sinks.throttle("slack", retry_after="1")
    code = main(["scan", "--format", "json"])
    outputs["kvmon scan (1) stdout+stderr"] = "\n".join(capsys.readouterr())
    assert code == 1
    code = main(["scan", "--format", "table"])  # delivers the first scan's webhook message
    outputs["kvmon scan (2) stdout+stderr"] = "\n".join(capsys.readouterr())

    for argv in (
        ["findings", "--status", "all", "--format", "json"],
        ["history", "kv-se-demo", "--format", "json"],
        ["report", "--output", str(tmp_path / "report.html")],
        ["notify-test", "--channel", "siem", "--format", "json"],
        ["notify-test", "--channel", "slack"],
    ):
        main(argv)
        outputs[f"kvmon {' '.join(argv[:3])} stdout+stderr"] = "\n".join(capsys.readouterr())
    outputs["kvmon report HTML"] = (tmp_path / "report.html").read_text(encoding="utf-8")

    outputs["Functions check_vault"] = _call(
        "check_vault",
        func.HttpRequest(
            method="GET",
            url="/api/vaults/kv-pl-demo/check",
            route_params={"name": "kv-pl-demo"},
            params={"notify": "true"},
            body=b"",
        ),
    )
    for name in ("findings", "report"):
        outputs[f"Functions {name}"] = _call(
            name, func.HttpRequest(method="GET", url=f"/api/{name}", route_params={}, params={}, body=b"")
        )

    settings = Settings.from_environ(environ)
    runtime = build_runtime(settings, environ=environ, credential=credential)
    lab.arm.server.inject(
        r"(?i)/subscriptions/" + SUB_B,
        Fault(
            status=401,
            body={"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}},
        ),
    )
    outcome = run_scan(ScanRequest(subscriptions=settings.subscriptions), runtime)
    report = outcome.report
    outputs["ScanReport JSON"] = json.dumps(to_jsonable(report))
    document = build_report_document(
        report, vantages=runtime.vantages, policies=outcome.policies, generated_at=dt.datetime.now(dt.UTC)
    )
    outputs["report document JSON"] = json.dumps(document, default=str)
    outputs["report HTML"] = render_html(document)

    # The store out of reach: the error names where it is, never how to get in.
    unreachable = environ["KVMON_STORAGE"].replace(f":{lab.azurite.table_port}/", ":9/")
    with pytest.raises(StoreUnavailable) as failure:
        run_scan(
            ScanRequest(subscriptions=(SUB_A,), probe=False, logs=False),
            build_runtime(
                settings,
                environ=environ,
                credential=credential,
                store=open_store(connection_string=unreachable),
            ),
        )
    outputs["StoreUnavailable"] = str(failure.value)
    monkeypatch.setenv("KVMON_STORAGE", unreachable)
    assert main(["scan", "--no-probes", "--no-logs", "--format", "json"]) == 3
    outputs["kvmon scan, store unreachable"] = "\n".join(capsys.readouterr())

    outputs["every stored entity"] = _stored_entities(lab.azurite.connection_string)
    outputs["bodies the receivers got"] = "\n".join(
        item.body.decode("utf-8", "replace") for item in [*lab.sinks.received, *lab.sinks.rejected]
    )
    outputs["log records (DEBUG, all loggers)"] = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )

    # The secrets were in play, or this test would prove nothing.
    assert len(lab.sinks.messages("webhook")) >= 2 and lab.sinks.rejected == []  # signed, verified
    assert lab.sinks.messages("teams") and lab.sinks.messages("slack")
    assert "kvmonFindings" in outputs["every stored entity"]  # written with the account key
    assert remote.server.request_counts["/api/probe"] >= 1 and silent.server.request_counts["/api/probe"] >= 1
    assert len(set(credential.tokens)) >= 2
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert any(r.name.startswith("azure.core") for r in caplog.records)
    assert any("keyless" in f.subject for f in report.findings if f.rule_id == "KV106")
    assert any(e.code == "401" for e in report.errors)

    secrets = _secrets(environ, credential)
    leaks = [
        f"{secret_name} in {output_name}: ...{text[max(0, text.find(secret) - 60) : text.find(secret) + len(secret) + 20]!r}..."
        for secret_name, secret in secrets.items()
        for output_name, text in outputs.items()
        if secret in text
    ]
    assert leaks == [], "\n".join(leaks)
    assert len(outputs) == 19 and len(secrets) >= 15  # none overwritten, all searched
