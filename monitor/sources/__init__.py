"""Read the world: ARM, Resource Graph, access logs; faults become ``ScanError``."""
