"""Key Vault's rules, one module per source they read: config KV0xx, probes KV1xx, logs KV2xx, drift KV3xx."""
