"""The standard components. Importing this package registers every built-in sign."""

from . import _all  # noqa: F401
