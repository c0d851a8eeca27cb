"""Standard layer-4 editors: components that observe or rewrite the bytes of a mesher's connection."""
