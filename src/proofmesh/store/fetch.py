"""Fetch a blob by CID from peers over HTTP, trusting none of them.

``GET {peer}/blobs/{cid}`` is streamed into the store, re-hashed as it arrives, and kept
only if it hashes to the requested CID. A peer that times out, errors, sends too much or
sends wrong bytes is skipped and the next one tried; nothing partial is ever stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from proofmesh.crypto.cid import normalize_cid
from proofmesh.errors import InputError, StoreError
from proofmesh.store.blobstore import BlobStore

__all__ = ["fetch", "FetchResult", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 16 * 1024**3
"""Refuse blobs over 16 GiB unless the caller raises the limit (a peer could stream forever)."""


@dataclass
class FetchResult:
    """Where a blob came from, and why the peers before it failed."""

    cid: str
    peer: str | None                      # None: it was already in the store
    failures: dict[str, str] = field(default_factory=dict)


def fetch(cid: str, peers: Sequence[str], store: BlobStore, *, timeout: float = 30.0,
          max_bytes: int = DEFAULT_MAX_BYTES, client: httpx.Client | None = None) -> FetchResult:
    """Get ``cid`` from the first peer that serves the right bytes and store it.

    ``peers`` are base URLs (``http://host:port``). Raises
    :class:`~proofmesh.errors.StoreError` listing each peer's failure if none succeeds.
    """
    cid = normalize_cid(cid)
    if store.has(cid):
        return FetchResult(cid=cid, peer=None)
    if not peers:
        raise InputError(f"no peers to fetch {cid} from",
                         fix="give at least one peer URL (e.g. from the node registry)")
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False)
    failures: dict[str, str] = {}
    try:
        for peer in peers:
            url = f"{peer.rstrip('/')}/blobs/{cid}"
            try:
                with http.stream("GET", url, timeout=timeout) as resp:
                    if resp.status_code != 200:
                        failures[peer] = f"HTTP {resp.status_code}"
                        continue
                    declared = resp.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                        failures[peer] = f"blob of {declared} bytes exceeds max_bytes={max_bytes}"
                        continue
                    store.put_stream(resp.iter_bytes(), expected_cid=cid, max_bytes=max_bytes)
                    return FetchResult(cid=cid, peer=peer, failures=failures)
            except StoreError as exc:
                if "taken down" in exc.message:
                    raise
                failures[peer] = exc.message
            except httpx.TimeoutException:
                failures[peer] = f"timed out after {timeout:g}s"
            except httpx.HTTPError as exc:
                failures[peer] = f"{type(exc).__name__}: {exc}"
    finally:
        if own:
            http.close()
    detail = "; ".join(f"{p}: {why}" for p, why in failures.items())
    raise StoreError(f"could not fetch {cid} from any of {len(peers)} peer(s): {detail}",
                     fix="try other peers, or check that the CID is right")
