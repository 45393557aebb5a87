"""Maintainer tooling: not shipped in the package."""
