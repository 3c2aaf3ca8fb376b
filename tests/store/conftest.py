"""Real HTTP servers on 127.0.0.1 (uvicorn in a thread, random free port)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI

from proofmesh.store.api import blob_router, serve_blobs
from proofmesh.store.blobstore import BlobStore


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (random free port); yields its base URL."""
    with serve_blobs(app=app) as url:
        yield url


def node_app(store: BlobStore, **kw) -> FastAPI:
    app = FastAPI()
    app.include_router(blob_router(store, **kw))
    return app


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "store")
