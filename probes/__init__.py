"""Vantage-point probes: what a vault looks like from one place (DNS, TCP/TLS, health, data plane).

``probes.scope`` decides which hosts may be contacted at all; ``probes.agent`` runs the steps for
many vaults at once; ``probes.remote`` asks another deployment to probe from where it stands.
"""
