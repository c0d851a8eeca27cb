"""Imports every module that registers signs, and declares the signs not built yet."""

from ..core import clock, fcache, resolv  # noqa: F401
from ..core.registry import registry
from . import planned  # noqa: F401
from ..web import app, rule, server  # noqa: F401,E402
from ..web import static  # noqa: F401,E402
from .handlets import favicon  # noqa: F401,E402
from .handlets import checkers, rewriter  # noqa: F401,E402
from .revisers import gzip, head  # noqa: F401,E402
from ..net import backends  # noqa: F401,E402
from ..web.proxy import fcgi as _fcgi, uwsgi as _uwsgi  # noqa: F401,E402
from ..web.proxy import http1 as _http1  # noqa: F401,E402
from ..web import wsgi as _wsgi  # noqa: F401,E402
from ..web import asgi as _asgi  # noqa: F401,E402
from ..web import socklet as _socklet  # noqa: F401,E402
from ..web.proxy import sock1 as _sock1  # noqa: F401,E402
