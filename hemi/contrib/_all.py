"""Imports every module that registers signs (the import is the registration), and declares the
signs not built yet."""

from ..core import clock, fcache, resolv  # noqa: F401
from . import planned  # noqa: F401
from ..web import app, rule, server, static, wsgi, asgi, socklet  # noqa: F401
from ..web.proxy import http1, fcgi, uwsgi, sock1  # noqa: F401
from ..net import backends  # noqa: F401
from .handlets import favicon, checkers, rewriter  # noqa: F401
from .revisers import gzip, head  # noqa: F401
