"""Vantage-point probes: what a vault looks like from one place (DNS, TCP/TLS, health, data plane).

One module per job, each importing only those below it:

- ``scope``: which hosts may be contacted at all; ``options``: how probes run (``ProbeOptions``);
- ``dns``, ``network`` (TCP/TLS), ``dataplane`` (healthstatus, the secret read): the steps;
- ``vault``: every step for one vault; ``threads``: one process's vaults, many at once;
- ``worker``: a worker process for a share of a big run; ``pool``: ``probe_vaults``, which shares
  the vaults out between this process and its workers;
- ``remote``: ask another deployment to probe from where it stands; ``wire``: the results' JSON;
- ``prober``: what a scan calls per vantage point, local or remote;
- ``endpoint``: the body of ``POST /api/probe``, where a monitor elsewhere asks this deployment.

Of ``monitor`` the package imports only the shared records and addresses, the configuration, the
naming rules and the errors, never a stage that calls it.
"""
