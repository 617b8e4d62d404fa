"""Azure's naming rules, one module per service: names, DNS suffixes and private link zones.

Pure knowledge, no I/O, below every stage: the probes check names against it before any packet is
sent and the judge names what a finding is about, so neither depends on the other for it.
"""
