"""The composition roots: ``run_scan`` (the one wiring), the runtime built from settings, the Functions handlers."""
