"""A small FastAPI app for tests/e2e/test_fastapi.py (and conf/examples/fastapi.conf):
JSON, path and query parameters, a form upload, a streaming response, a background task, and
lifespan state."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import BackgroundTasks, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    # What the lifespan yields is the state every request sees (request.state).
    yield {"greeting": "hello from lifespan", "pid": os.getpid()}


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None, limit: int = 10) -> dict:
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items")
async def create_item(item: Item) -> dict:
    return {"created": item.model_dump(), "total": item.price * 2}


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form(...)) -> dict:
    data = await file.read()
    return {"filename": file.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "note": note, "content_type": file.content_type}


@app.get("/stream")
async def stream(n: int = 5) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(n):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0.01)
    return StreamingResponse(lines(), media_type="text/plain")


def _write_later(path: str, text: str) -> None:
    import time
    time.sleep(0.2)  # a sync background task runs in a thread, after the response is sent
    with open(path, "w") as f:
        f.write(text)


@app.post("/background")
async def background(path: str, tasks: BackgroundTasks) -> dict:
    tasks.add_task(_write_later, path, "background done")
    return {"scheduled": path}


@app.get("/state")
async def state(request: Request) -> dict:
    return {"greeting": request.state.greeting, "pid": request.state.pid}


@app.get("/sync")
def sync_endpoint() -> dict:
    # A plain def endpoint runs in FastAPI's thread pool (anyio): the app waits for it.
    return {"thread": threading.current_thread().name != "MainThread"}


@app.api_route("/plain", methods=["GET", "HEAD"], response_class=PlainTextResponse)
async def plain() -> str:
    return "plain text"
