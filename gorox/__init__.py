"""Gorox: the program built on the Hemi engine."""

from hemi import __version__

__all__ = ["__version__"]
