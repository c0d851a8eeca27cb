"""Imports every module that registers signs (the import is the registration), and declares the
signs not built yet."""

from ..core import clock, fcache, resolv  # noqa: F401
from . import planned  # noqa: F401
from ..web import app, rule, server, static, wsgi, asgi, socklet  # noqa: F401
from ..web.proxy import http1, fcgi, uwsgi, sock1  # noqa: F401
from ..net import backends, tcps  # noqa: F401
from .dealers import basic, access, tcps_proxy  # noqa: F401
from .editors import viewers  # noqa: F401
from .handlets import favicon, checkers, rewriter  # noqa: F401
from .revisers import gzip, head  # noqa: F401
from .servers import echo, socks  # noqa: F401
from ..net import udps  # noqa: F401
from .dealers import udps as udps_dealers  # noqa: F401
