"""ASGI: Python async web apps (FastAPI, Starlette, Django, ...) served by the ``asgi`` handlet.

``handlet.py`` is the component (app loading, lifespan, the keys every scope shares),
``http.py`` the ``http`` scope, ``lifespan.py`` the lifespan protocol. A module for another
scope type registers its function in :data:`handlet.UPGRADES`.
"""

from .handlet import UPGRADES, AsgiHandlet, as_asgi3
from .http import ClientDisconnected, HttpExchange
from .lifespan import Lifespan, LifespanFailed
from . import ws  # noqa: F401,E402  (registers the websocket scope in UPGRADES)

__all__ = ["AsgiHandlet", "UPGRADES", "as_asgi3", "ClientDisconnected", "HttpExchange", "Lifespan", "LifespanFailed"]
