"""Model weights across nodes: publish a version's files, fetch and check them elsewhere.

A version's weights travel as a **weights bundle**: a small JSON blob listing every file
of the model folder (``config.json``, the safetensors shards or adapter, tokenizer
files, or one ``.onnx``) by CID. The owner's node keeps the files and the bundle in its
blob store (served at ``/blobs/<cid>`` by its daemon) and records the bundle's CID on
chain with ``ModelRegistry.publish_weights`` — the on-chain locator. Any node then:

1. reads the locator and fetches the bundle and every file from peers, the owner's
   registered endpoint first (:func:`proofmesh.store.fetch.fetch` re-hashes every blob
   against its CID, so a peer cannot substitute bytes);
2. re-computes the per-tensor weights root of what it got and compares it with the
   root registered for the version. A bundle whose files are not the registered weights
   (published by mistake or on purpose) is refused with the differing tensors named,
   and nothing is left in the destination.

The CID check protects the transfer; the root check protects against the publisher.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from proofmesh.errors import InputError, NotAvailableError, VerificationError
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.fetch import fetch

BUNDLE_FORMAT = "proofmesh-weights-bundle/1"
MAX_FILES = 256
FETCH_TIMEOUT = 60.0


class WeightsMismatchError(VerificationError):
    """Fetched (or local) weights are not the ones registered for the version."""


@dataclass(frozen=True)
class WeightsBundle:
    """The files of one version's weights, by CID."""

    version: int
    weights_root: str                   # 0x-hex, as registered
    files: dict[str, str]               # file name -> CID
    sizes: dict[str, int]
    single: bool                        # True: the model is one file (``.onnx`` / ``.safetensors``)

    def to_bytes(self) -> bytes:
        return json.dumps({"format": BUNDLE_FORMAT, "version": self.version, "weights_root": self.weights_root,
                           "files": self.files, "sizes": self.sizes, "single": self.single},
                          sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, cid: str) -> "WeightsBundle":
        fix = "the version's owner should publish its weights again (`proofmesh model publish`)"
        try:
            d = json.loads(raw)
            if d.get("format") != BUNDLE_FORMAT:
                raise ValueError(f"format is {d.get('format')!r}")
            files = {str(k): str(v) for k, v in d["files"].items()}
            b = cls(int(d["version"]), str(d["weights_root"]), files,
                    {str(k): int(v) for k, v in d.get("sizes", {}).items()}, bool(d.get("single", False)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WeightsMismatchError(f"blob {cid} is not a weights bundle ({exc})", fix=fix) from None
        if not files or len(files) > MAX_FILES or (b.single and len(files) != 1):
            raise WeightsMismatchError(f"weights bundle {cid} lists {len(files)} file(s)", fix=fix)
        for name in files:
            # names become paths on the fetching node: no directories, no hidden files
            if not name or "/" in name or "\\" in name or name.startswith(".") or name in ("..",):
                raise WeightsMismatchError(f"weights bundle {cid} has an unsafe file name {name!r}", fix=fix)
        return b


def bundle_files(path: str | Path) -> tuple[list[Path], bool]:
    """The files that make up the model at ``path`` and whether it is a single file.

    A file (``.safetensors`` / ``.onnx``) is itself; a folder contributes every regular,
    non-hidden file at its top level (config, shards, index, tokenizer, adapter config).
    """
    p = Path(path)
    if p.is_file():
        return [p], True
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder", fix="give the model's folder or its .onnx/.safetensors file")
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise InputError(f"{p}: the folder has no files", fix="save the model with save_pretrained() first")
    if len(files) > MAX_FILES:
        raise InputError(f"{p}: {len(files)} files (max {MAX_FILES})", fix="publish only the model's own folder")
    return files, False


def _model_path(folder: Path, bundle: WeightsBundle) -> Path:
    return folder / next(iter(bundle.files)) if bundle.single else folder


def _check_root(client: Any, version_id: int, model: Path, registered_root: str, where: str,
                peers: Sequence[str] | None = None) -> None:
    """WeightsMismatchError naming the differing tensors unless ``model`` hashes to the root."""
    from proofmesh.models.weights import diff, manifest

    local = manifest(model)
    if "0x" + local.root.hex() == registered_root:
        return
    detail = ""
    try:
        manifest_cid = client.version(version_id).manifest_cid
        if peers and manifest_cid and client.blobs is not None:
            fetch(manifest_cid, peers, client.blobs, timeout=FETCH_TIMEOUT)
        d = diff(local, client.manifest_of(version_id))
        parts = [f"{len(d.changed)} changed", f"{len(d.missing)} missing", f"{len(d.extra)} extra"]
        named = (d.changed + d.missing + d.extra)[:5]
        detail = f" ({', '.join(parts)} tensor(s): {', '.join(named)})"
    except Exception:  # without the registered manifest, only the roots can be compared
        pass
    raise WeightsMismatchError(
        f"weights of version {version_id} {where} have root 0x{local.root.hex()}, "
        f"but the chain registers {registered_root}{detail}: refusing them",
        fix="these are not the registered weights; the version's owner must publish the right files")


def publish_weights(client: Any, version_id: int, path: str | Path, *, store: BlobStore | None = None,
                    sender: Any = None) -> tuple[str, Any]:
    """Put the version's files in the blob store and record the bundle CID on chain.

    Refuses (before any transaction) files whose weights root is not the registered one.
    Returns ``(bundle_cid, TxResult)``.
    """
    store = store or client.blobs
    if store is None:
        raise InputError("publishing weights needs a blob store", fix="use a client with a home (its store)")
    rec = client.version(version_id)
    files, single = bundle_files(path)
    _check_root(client, version_id, Path(path), rec.weights_root, f"at {path}")
    cids = {f.name: store.put_file(f) for f in files}
    bundle = WeightsBundle(version_id, rec.weights_root, cids, {f.name: f.stat().st_size for f in files}, single)
    cid = store.put_bytes(bundle.to_bytes())
    tx = client.chain.transact(client.registry.functions.publish_weights(version_id, cid), sender=sender)
    return cid, tx


def weights_cid(client: Any, version_id: int) -> str:
    """The version's published bundle CID, "" if never published."""
    return client.chain.call(client.registry.functions.weights_cid_of(version_id))


def peers_for(client: Any, version_id: int, *, exclude: Sequence[str] = ()) -> list[str]:
    """Node URLs to fetch a version's blobs from: its owner's endpoint first, then every
    other registered node (a copy anywhere is as good: blobs are checked by CID)."""
    from proofmesh.chain.core import Registry

    owner = client.version(version_id).owner
    skip = {u.rstrip("/") for u in exclude}
    nodes = [n for n in Registry(client.chain).nodes() if n.endpoint.startswith("http")]
    nodes.sort(key=lambda n: n.address != owner)
    out: list[str] = []
    for n in nodes:
        url = n.endpoint.rstrip("/")
        if url not in skip and url not in out:
            out.append(url)
    return out


def fetch_weights(client: Any, version_id: int, dest: str | Path, *, peers: Sequence[str] | None = None,
                  store: BlobStore | None = None, timeout: float = FETCH_TIMEOUT) -> Path:
    """Fetch version ``version_id``'s published weights into ``dest`` and check them.

    Returns the model path (the folder, or the single file in it). Raises
    :class:`NotAvailableError` if nothing was published, :class:`~proofmesh.errors.StoreError`
    if no peer serves a blob, :class:`WeightsMismatchError` if the files are not the
    registered weights (``dest`` is then left without them).
    """
    store = store or client.blobs
    if store is None:
        raise InputError("fetching weights needs a blob store", fix="use a client with a home (its store)")
    rec = client.version(version_id)
    cid = weights_cid(client, version_id)
    if not cid:
        raise NotAvailableError(f"version {version_id} has no published weights",
                                fix=f"its owner ({rec.owner}) runs `proofmesh model publish {version_id} PATH` "
                                    "on a node whose daemon serves its store")
    peers = list(peers) if peers is not None else peers_for(client, version_id)
    fetch(cid, peers, store, timeout=timeout)
    bundle = WeightsBundle.from_bytes(store.get_bytes(cid), cid)
    if bundle.version != version_id or bundle.weights_root != rec.weights_root:
        raise WeightsMismatchError(f"weights bundle {cid} is for version {bundle.version} "
                                   f"(root {bundle.weights_root}), not version {version_id}",
                                   fix="the version's owner must publish this version's own bundle")
    for name, fcid in bundle.files.items():
        fetch(fcid, peers, store, timeout=timeout)
    dest = Path(dest)
    final = dest / f"v{version_id}-{rec.weights_root[2:14]}"
    if final.exists():
        try:   # fetched before: still the registered weights?
            _check_root(client, version_id, _model_path(final, bundle), rec.weights_root, f"in {final}")
            return _model_path(final, bundle)
        except (WeightsMismatchError, InputError):
            shutil.rmtree(final)
    tmp = dest / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, fcid in bundle.files.items():
            store.export(fcid, tmp / name)
        _check_root(client, version_id, _model_path(tmp, bundle), rec.weights_root, f"fetched from bundle {cid}",
                    peers)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(final)
    return _model_path(final, bundle)


__all__ = ["WeightsBundle", "WeightsMismatchError", "publish_weights", "fetch_weights", "weights_cid",
           "peers_for", "bundle_files"]
