"""Layer-4 servers that are not meshers: echoServer and socksServer."""
