"""Storage accounts' rules: ``config`` ST0xx (configuration and baseline), ``probes`` ST1xx, ``drift`` ST3xx."""
