"""Storage accounts' rules: ``config`` ST0xx (configuration and baseline), ``logs`` ST2xx, ``drift`` ST3xx."""
