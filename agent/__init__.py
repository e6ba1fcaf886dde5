"""Postflight: a post-deployment validation agent."""

from common.version import __version__

__all__ = ["__version__"]
