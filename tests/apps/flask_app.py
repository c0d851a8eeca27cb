"""A Flask application for tests/e2e/test_flask.py and bench/wsgi_bench.py: the everyday
features an app relies on (routing, query parameters, JSON in and out, forms with a file,
a streamed response that uses the request inside its generator)."""

from __future__ import annotations

import hashlib
import time
from typing import Iterator

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)


@app.get("/hello")
def hello() -> str:
    return "Hello, World!"


@app.get("/items/<int:item_id>")
def item(item_id: int) -> Response:
    return jsonify(id=item_id, q=request.args.get("q"), tags=request.args.getlist("tag"),
                   script_root=request.script_root, path=request.path, url=request.url)


@app.post("/json")
def echo_json() -> tuple[Response, int]:
    data = request.get_json()
    return jsonify(received=data, type=request.content_type), 201


@app.post("/form")
def form() -> Response:
    upload = request.files.get("file")
    return jsonify(fields=request.form.to_dict(flat=False),
                   file=None if upload is None else {
                       "name": upload.filename, "type": upload.content_type,
                       "sha256": hashlib.sha256(upload.read()).hexdigest()})


@app.get("/stream")
def stream() -> Response:
    count = request.args.get("n", 3, type=int)
    delay = request.args.get("delay", 0.0, type=float)

    @stream_with_context
    def generate() -> Iterator[str]:
        # The request is still there inside the generator: stream_with_context keeps it.
        who = request.args.get("who", "nobody")
        for i in range(count):
            if delay:
                time.sleep(delay)
            yield f"{who} {i}\n"
    return Response(generate(), mimetype="text/plain")


@app.errorhandler(404)
def not_found(e: Exception) -> tuple[Response, int]:
    return jsonify(error="not found", path=request.path), 404
