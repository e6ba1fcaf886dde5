"""Pluggable checks: turn the environment under test into typed samples."""
