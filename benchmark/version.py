"""The package version (read by setup.cfg, written into every table, manifest and export)."""

__version__ = "0.1.0"
