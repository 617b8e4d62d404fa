"""The rule catalog: ``base`` (what a rule is), one package per service, ``catalog`` (all of them)."""
