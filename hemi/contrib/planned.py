"""Signs of the product that are not built yet. A config naming one gets a clear
"not implemented yet" with the issue that will bring it, instead of "unknown component".
A sign that gets registered later simply stops being planned."""

from ..core.registry import registry

_PLANNED: dict[str, tuple[str, tuple[str, ...]]] = {
    "a later issue (outgates)": ("fixture", ("http1Outgate", "tcpsOutgate", "tudsOutgate")),
    "layer-4 issue #5 (meshers)": ("mesher", ("quicMesher",)),
    "layer-4 issue #5 (backends)": ("backend", ("quicBackend",)),
    "a later issue (HTTP/2, HTTP/3)": ("handlet", ("http2Proxy", "http3Proxy")),
    "a later issue (HTTP/3)": ("server", ("http3Server",)),
    "a later issue (HTTP/2, HTTP/3 backends)": ("backend", ("http2Backend", "http3Backend")),
    "a later issue (RPC)": ("server", ("hrpcServer", "grpcServer")),
    "a later issue (RPC svcs)": ("svc", ("svc",)),
    "a later issue (staters)": ("stater", ("localStater", "redisStater")),
    "a later issue (storers and caching)": ("storer", ("localStorer", "memStorer", "redisStorer")),
    "a later issue (revisers)": ("reviser", ("gunzipReviser", "replaceReviser", "ssiReviser", "wrapReviser")),
    "a later issue (cronjobs)": ("cronjob", ("cleanCronjob", "statCronjob")),
}

for where, (kind, signs) in _PLANNED.items():
    for sign in signs:
        registry.plan(sign, kind, "planned in " + where)
