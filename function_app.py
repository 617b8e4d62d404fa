"""kvmon as an Azure Functions app (Python v2 programming model).

A thin shell: each function parses its trigger, calls the same ``monitor``/``probes`` functions
the CLI calls, and shapes the response. Settings come from app settings (see the README).

Every deployment answers:

- ``probe`` (POST ``/api/probe``): this deployment's probes, for a monitor elsewhere.
- ``health`` (GET ``/api/health``, anonymous).

The monitor role (``KVMON_ROLE=monitor``, read when the host indexes the app) also has these;
a probe deployment neither registers nor imports them, so it starts with probing alone:

- ``scheduled_scan`` (timer, ``%KVMON_SCAN_SCHEDULE%``): one queue message per subscription.
- ``scan_worker`` (queue ``%KVMON_SCAN_QUEUE%``): scans one subscription; a message that keeps
  failing lands in ``<queue>-poison`` and ``poison_scan_jobs`` records it as a scan error.
- ``vault_changed`` (Event Grid): an ARM write or delete of a vault, read again and judged at once,
  its probes queued as a follow-up for ``scan_worker``.
- ``vault_changed_queue`` (queue ``%KVMON_EVENT_QUEUE%``): the same from Event Grid's Storage queue
  destination; a message that keeps failing lands in ``<queue>-poison`` and
  ``poison_vault_changes`` records it as a scan error.
- ``check_vault`` (GET ``/api/vaults/{name}/check``): an on-demand check of one vault.
- ``findings`` (GET ``/api/findings``), ``report`` (GET ``/api/report``).
"""

from __future__ import annotations

import os

import azure.functions as func

from monitor.app import probe_functions
from monitor.app.answers import Answer
from monitor.app.deployment import QUEUE_CONNECTION, startup_role
from monitor.config.settings import Role

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="probe", methods=["POST"])
def probe(req: func.HttpRequest) -> func.HttpResponse:
    return _http(probe_functions.probe(req.get_body()))


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return _http(probe_functions.health())


def _register_monitor_functions(app: func.FunctionApp) -> None:
    from monitor.app import monitor_functions as handlers

    @app.timer_trigger(
        schedule="%KVMON_SCAN_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
    )
    def scheduled_scan(timer: func.TimerRequest) -> None:
        handlers.scheduled_scan(past_due=timer.past_due)

    @app.queue_trigger(arg_name="message", queue_name="%KVMON_SCAN_QUEUE%", connection=QUEUE_CONNECTION)
    def scan_worker(message: func.QueueMessage) -> None:
        handlers.scan_worker(message.get_body(), dequeue_count=message.dequeue_count or 1)

    @app.queue_trigger(
        arg_name="message", queue_name="%KVMON_SCAN_QUEUE%-poison", connection=QUEUE_CONNECTION
    )
    def poison_scan_jobs(message: func.QueueMessage) -> None:
        handlers.poison_scan_job(message.get_body(), message_id=message.id or "")

    @app.event_grid_trigger(arg_name="event")
    def vault_changed(event: func.EventGridEvent) -> None:
        # The worker hands an EventGridEvent or, for a CloudEvents subscription, a CloudEvent;
        # monitor.sources.events reads either as the JSON it was decoded from.
        handlers.vault_changed(event)

    @app.queue_trigger(arg_name="message", queue_name="%KVMON_EVENT_QUEUE%", connection=QUEUE_CONNECTION)
    def vault_changed_queue(message: func.QueueMessage) -> None:
        # Event Grid's Storage queue destination (a monitor with no public inbound): one event per
        # message, in the subscription's schema; a raised error is retried, then the poison queue.
        handlers.vault_changed(message.get_body(), source="queue message")

    @app.queue_trigger(
        arg_name="message", queue_name="%KVMON_EVENT_QUEUE%-poison", connection=QUEUE_CONNECTION
    )
    def poison_vault_changes(message: func.QueueMessage) -> None:
        handlers.poison_vault_change(message.get_body(), message_id=message.id or "")

    @app.route(route="vaults/{name}/check", methods=["GET"])
    def check_vault(req: func.HttpRequest) -> func.HttpResponse:
        return _http(handlers.check_vault(req.route_params.get("name", ""), dict(req.params)))

    @app.route(route="findings", methods=["GET"])
    def findings(req: func.HttpRequest) -> func.HttpResponse:
        return _http(handlers.findings(dict(req.params)))

    @app.route(route="report", methods=["GET"])
    def report(req: func.HttpRequest) -> func.HttpResponse:
        return _http(handlers.report(dict(req.params)))


def _http(answer: Answer) -> func.HttpResponse:
    return func.HttpResponse(
        body=answer.body, status_code=answer.status, mimetype=answer.mimetype, headers=answer.headers
    )


if startup_role(os.environ) is Role.MONITOR:
    _register_monitor_functions(app)
