"""Standard layer-4 dealers: components that handle a mesher's connection (proxy, echo, ...)."""
