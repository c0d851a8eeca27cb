"""HTTP/1.x: the sans-IO codec (:mod:`.codec`) and the connection around it."""

from .codec import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    REASONS,
    Body,
    EndOfMessage,
    Event,
    ProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    encode_chunk,
    encode_last_chunk,
    render_response_head,
)

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "PAUSED",
    "REASONS",
    "Body",
    "EndOfMessage",
    "Event",
    "ProtocolError",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "encode_chunk",
    "encode_last_chunk",
    "render_response_head",
]
