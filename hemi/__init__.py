"""Hemi, the engine of Gorox.

A program imports :mod:`hemi`, imports the components it wants (which registers their signs),
and hands a config file to a :class:`hemi.core.stage.Stage`.
"""

__version__ = "0.1.0"
