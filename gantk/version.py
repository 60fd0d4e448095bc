"""The package version (a leaf module: the checkpoint writer and plugin list read it)."""
__version__ = "0.1.0"
