"""The program's own apps. gorox imports this package from its base directory at start, so
every handlet an app module registers here is usable in configs like a built-in one."""

from . import example  # noqa: F401
from . import chat  # noqa: F401,E402
