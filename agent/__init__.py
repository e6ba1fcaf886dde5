"""Postflight: a post-deployment validation agent."""

__version__ = "0.1.0"
