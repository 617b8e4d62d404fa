"""kvmon as an Azure Functions app (Python v2 model): a thin shell over monitor.scan and probes."""

from __future__ import annotations

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
