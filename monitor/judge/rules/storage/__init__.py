"""Storage accounts' rules: ``config`` ST0xx (configuration and baseline), ``probes`` ST1xx, ``logs``
ST2xx, ``drift`` ST3xx."""
