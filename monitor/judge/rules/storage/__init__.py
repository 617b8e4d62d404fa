"""Storage accounts' rules: ``config`` ST0xx (configuration and baseline), ``drift`` ST3xx."""
