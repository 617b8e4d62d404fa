"""Storage accounts' own reading: the ARM account document normalised to ``StorageAccountPosture``."""
