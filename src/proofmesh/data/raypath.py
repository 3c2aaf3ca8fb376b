"""The ingest map step on Ray (Ray Data), for corpora beyond one machine.

The driver cuts the input into shards — a JSONL file into byte ranges at line
boundaries (with each range's first line number, so problems still name file and line),
other files whole — and Ray Data maps :func:`_sketch_shard` over them on the cluster:
read, normalise, hash, shingle, sign. The driver then runs the same reduce step as the
local path (:func:`proofmesh.data.pipeline.ingest` with ``sketches=``), in shard order,
so the kept set is the same as a local run (tested).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path


from proofmesh.data.pipeline import IngestConfig, Sketch, sketch
from proofmesh.data.readers import JSONL_SUFFIXES, ReadOptions, input_files
from proofmesh.errors import InputError, NotAvailableError

SHARD_BYTES = 64 << 20


def plan_shards(paths, shard_bytes: int = SHARD_BYTES) -> list[dict]:
    """Shards in input order: {file, start, end, line_base} (end = -1: whole file)."""
    shards: list[dict] = []
    for p in paths:
        for f in input_files(p):
            if f.suffix.lower() not in JSONL_SUFFIXES or f.stat().st_size <= shard_bytes:
                shards.append({"file": str(f), "start": 0, "end": -1, "line_base": 0})
                continue
            size = f.stat().st_size
            start, line_base = 0, 0
            with open(f, "rb") as fh:
                while start < size:
                    fh.seek(min(size, start + shard_bytes))
                    fh.readline()                 # extend to the end of the line
                    end = min(size, fh.tell()) if start + shard_bytes < size else size
                    shards.append({"file": str(f), "start": start, "end": end, "line_base": line_base})
                    fh.seek(start)
                    # count lines of this shard in bounded chunks
                    left, n = end - start, 0
                    while left > 0:
                        chunk = fh.read(min(left, 8 << 20))
                        n += chunk.count(b"\n")
                        left -= len(chunk)
                    line_base += n
                    start = end
    return shards


def _sketch_shard(row: dict) -> dict:
    """Ray worker: the sketches of one shard, pickled (numpy + Arrow inside)."""
    from proofmesh.data.readers import _read_jsonl_range, read_records

    cfg = IngestConfig(**row["cfg"])
    opts = ReadOptions(text_field=cfg.text_field, on_error=cfg.on_error, max_record_bytes=cfg.max_record_bytes)
    try:
        if row["end"] < 0:
            raws = list(read_records(row["file"], options=opts))
        else:
            raws = list(_read_jsonl_range(Path(row["file"]), row["start"], row["end"], row["line_base"], opts))
        sketches = [sketch(r, cfg) for r in raws]
        return {"order": row["order"], "payload": pickle.dumps((sketches, [str(p) for p in opts.problems], None))}
    except InputError as exc:
        return {"order": row["order"], "payload": pickle.dumps(([], [], (exc.message, exc.fix)))}


def ray_sketches(paths, cfg: IngestConfig, address: str, problems: list | None = None) -> Iterator[Sketch]:
    """Sketches of every shard, computed by Ray Data at ``address`` ("local" starts one here)."""
    try:
        import ray
    except ImportError as exc:
        raise NotAvailableError("the Ray path needs ray[data]", fix="pip install 'ray[data]'") from exc
    shards = plan_shards(paths)
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    rows = [dict(s, order=i, cfg=asdict(cfg)) for i, s in enumerate(shards)]
    ds = ray.data.from_items(rows).map(_sketch_shard)
    for row in ds.iter_rows():
        sketches, probs, err = pickle.loads(row["payload"])
        if err is not None:
            raise InputError(err[0], fix=err[1])
        if problems is not None:
            problems.extend(probs)
        yield from sketches
