"""Postflight's version, once: the package metadata, the User-Agent and the API read it."""

__version__ = "0.1.0"
