"""The package version, in a module of its own so the command line reads it without the root."""
__version__ = "0.1.0"
