"""What a scan calls for each vantage point: ``Prober`` probes here (``probes.pool``) or asks the
vantage point's endpoint (``probes.remote``), whichever the vantage point says.

Its own module because it is the one place that knows both ways: the local pool and the remote
client each know only theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from azure.core.credentials import TokenCredential

from monitor.config.policy import Vantage
from monitor.model import ProbeResult
from probes.options import ProbeOptions
from probes.pool import probe_vaults
from probes.remote import probe_remote
from probes.scope import OutOfScope
from probes.vault import not_probed


class Prober:
    """What a scan calls per vantage point: probes locally, or asks the vantage's endpoint.

    Never raises for one bad name or one silent vantage point: names outside the scope come back
    as results with an error, and remote failures as results with ``vantage_error`` (KV106).
    """

    def __init__(
        self,
        *,
        options: ProbeOptions,
        credential: TokenCredential,
        function_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options
        self.credential = credential
        # app setting name -> function key of a remote vantage point's endpoint
        self.function_keys = dict(function_keys or {})

    def __call__(self, names: Sequence[str], vantage: Vantage) -> list[ProbeResult]:
        in_scope: list[str] = []
        refused: dict[str, ProbeResult] = {}
        for name in names:
            try:
                in_scope.append(self.options.scope.hostname_for(name))
            except OutOfScope as exc:
                refused[name] = not_probed(name, vantage, str(exc))
        if vantage.endpoint:
            key = self.function_keys.get(vantage.key_setting or "")
            probed = probe_remote(in_scope, vantage=vantage, function_key=key, options=self.options)
        else:
            probed = probe_vaults(in_scope, vantage=vantage, options=self.options, credential=self.credential)
        by_host = dict(zip(in_scope, probed, strict=True))
        results = []
        for name in names:
            if name in refused:
                results.append(refused[name])
            else:
                results.append(by_host[self.options.scope.hostname_for(name)])
        return results
