"""Key Vault's own reading: the ARM vault document normalised to ``VaultPosture``."""
