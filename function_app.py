"""kvmon as an Azure Functions app (Python v2 programming model).

A thin shell: each function parses its trigger, calls the same ``monitor``/``probes`` functions
the CLI calls, and shapes the response. Settings come from app settings (see the README).

- ``scheduled_scan`` (timer, ``%KVMON_SCAN_SCHEDULE%``): one queue message per subscription.
- ``scan_worker`` (queue ``%KVMON_SCAN_QUEUE%``): scans one subscription; a message that keeps
  failing lands in ``<queue>-poison`` and ``poison_scan_jobs`` records it as a scan error.
- ``check_vault`` (GET ``/api/vaults/{name}/check``): an on-demand check of one vault.
- ``probe`` (POST ``/api/probe``): this deployment's probes, for a monitor elsewhere.
- ``findings`` (GET ``/api/findings``), ``report`` (GET ``/api/report``), ``health`` (anonymous).
"""

from __future__ import annotations

import azure.functions as func

from monitor.app import functions as handlers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.timer_trigger(schedule="%KVMON_SCAN_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_scan(timer: func.TimerRequest) -> None:
    handlers.scheduled_scan(past_due=timer.past_due)


@app.queue_trigger(arg_name="message", queue_name="%KVMON_SCAN_QUEUE%", connection="AzureWebJobsStorage")
def scan_worker(message: func.QueueMessage) -> None:
    handlers.scan_worker(message.get_body(), dequeue_count=message.dequeue_count or 1)


@app.queue_trigger(
    arg_name="message", queue_name="%KVMON_SCAN_QUEUE%-poison", connection="AzureWebJobsStorage"
)
def poison_scan_jobs(message: func.QueueMessage) -> None:
    handlers.poison_scan_job(message.get_body(), message_id=message.id or "")


@app.route(route="vaults/{name}/check", methods=["GET"])
def check_vault(req: func.HttpRequest) -> func.HttpResponse:
    return _http(handlers.check_vault(req.route_params.get("name", ""), dict(req.params)))


@app.route(route="probe", methods=["POST"])
def probe(req: func.HttpRequest) -> func.HttpResponse:
    return _http(handlers.probe(req.get_body()))


@app.route(route="findings", methods=["GET"])
def findings(req: func.HttpRequest) -> func.HttpResponse:
    return _http(handlers.findings(dict(req.params)))


@app.route(route="report", methods=["GET"])
def report(req: func.HttpRequest) -> func.HttpResponse:
    return _http(handlers.report(dict(req.params)))


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return _http(handlers.health())


def _http(answer: handlers.Answer) -> func.HttpResponse:
    return func.HttpResponse(
        body=answer.body, status_code=answer.status, mimetype=answer.mimetype, headers=answer.headers
    )
