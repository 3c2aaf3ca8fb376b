"""Fetch a blob by CID from peers over HTTP, trusting none of them.

``GET {peer}/blobs/{cid}`` is streamed into the store, re-hashed as it arrives, and kept
only if it hashes to the requested CID. A peer that times out, errors, sends too much, sends
wrong bytes or sends too slowly is skipped and the next one tried; nothing partial is ever
stored.

"Too slowly" is a minimum-throughput rule over the whole transfer
(:class:`~proofmesh.http_limits.MinRate`, through :func:`proofmesh.http_reads.rated_stream`): a
peer gets ``timeout`` seconds of grace plus one second per ``http_min_rate_kbps`` kilobits it has
sent. A per-read timeout alone let a peer that sends a byte before each read timeout hold the
fetching node for ever; a blob of any size at a normal speed still arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from proofmesh.crypto.cid import normalize_cid
from proofmesh.errors import InputError, StoreError
from proofmesh.http_limits import MinRate
from proofmesh.http_reads import TransferTooSlow, min_rate_kbps as default_min_rate_kbps, rated_stream
from proofmesh.store.blobstore import BlobStore

__all__ = ["fetch", "FetchResult", "FetchFailed", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 16 * 1024**3
"""Refuse blobs over 16 GiB unless the caller raises the limit (a peer could stream forever)."""


@dataclass
class FetchResult:
    """Where a blob came from, and why the peers before it failed."""

    cid: str
    peer: str | None                      # None: it was already in the store
    failures: dict[str, str] = field(default_factory=dict)


class FetchFailed(StoreError):
    """No peer served the blob; ``causes`` maps each peer to its error (e.g. a
    :class:`~proofmesh.http_reads.TransferTooSlow`) or to a failure's text (an HTTP status)."""

    def __init__(self, message: str, *, fix: str, causes: dict[str, Exception | str]) -> None:
        super().__init__(message, fix=fix)
        self.causes = causes


def fetch(cid: str, peers: Sequence[str], store: BlobStore, *, timeout: float = 30.0,
          max_bytes: int = DEFAULT_MAX_BYTES, client: httpx.Client | None = None,
          min_rate_kbps: float | None = None) -> FetchResult:
    """Get ``cid`` from the first peer that serves the right bytes and store it.

    ``peers`` are base URLs (``http://host:port``). ``timeout`` bounds each read and is the
    grace of the minimum-rate rule; ``min_rate_kbps`` its rate (None: ``http_min_rate_kbps`` of
    the settings of ``PROOFMESH_HOME``). Raises :class:`FetchFailed` (a
    :class:`~proofmesh.errors.StoreError`) listing each peer's failure if none succeeds.
    """
    cid = normalize_cid(cid)
    if store.has(cid):
        return FetchResult(cid=cid, peer=None)
    if not peers:
        raise InputError(f"no peers to fetch {cid} from",
                         fix="give at least one peer URL (e.g. from the node registry)")
    rule = MinRate(timeout, default_min_rate_kbps() if min_rate_kbps is None else min_rate_kbps)
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False)
    failures: dict[str, str] = {}
    causes: dict[str, Exception | str] = {}
    try:
        for peer in peers:
            url = f"{peer.rstrip('/')}/blobs/{cid}"
            try:
                with rated_stream("GET", url, rule=rule, client=http) as stream:
                    resp = stream.response
                    if resp.status_code != 200:
                        failures[peer] = causes[peer] = f"HTTP {resp.status_code}"
                        continue
                    declared = resp.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                        failures[peer] = causes[peer] = f"blob of {declared} bytes exceeds max_bytes={max_bytes}"
                        continue
                    # put_stream writes to a temporary file and removes it on any error
                    # (TransferTooSlow raised from the stream included): nothing partial stays
                    store.put_stream(stream.iter_bytes(), expected_cid=cid, max_bytes=max_bytes)
                    return FetchResult(cid=cid, peer=peer, failures=failures)
            except StoreError as exc:
                if "taken down" in exc.message:
                    raise
                failures[peer], causes[peer] = exc.message, exc
            except TransferTooSlow as exc:
                failures[peer], causes[peer] = exc.message, exc
            except httpx.TimeoutException as exc:
                failures[peer], causes[peer] = f"timed out after {timeout:g}s", exc
            except httpx.HTTPError as exc:
                failures[peer], causes[peer] = f"{type(exc).__name__}: {exc}", exc
    finally:
        if own:
            http.close()
    detail = "; ".join(f"{p}: {why}" for p, why in failures.items())
    raise FetchFailed(f"could not fetch {cid} from any of {len(peers)} peer(s): {detail}",
                      fix="try other peers, or check that the CID is right", causes=causes)
