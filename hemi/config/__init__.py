"""The config language: lexer -> parser -> a tree of :class:`Block` specs.

The parser knows nothing about components: it produces generic blocks with properties,
conditions and children. The stage builder (``hemi.core.stage``) decides what may nest where.
"""

from .errors import ConfigError, Location
from .tree import Block, Condition, Value
from .parser import parse_file, parse_text

__all__ = ["ConfigError", "Location", "Block", "Condition", "Value", "parse_file", "parse_text"]
