"""Streaming readers: JSONL, Parquet and folders of text files → Arrow batches of raw text.

Memory stays bounded by the block size: a JSONL file is read in blocks split at the
last newline and parsed by a compiled scanner (:mod:`proofmesh.data.jsonl`); only lines it
flags are re-parsed by Python's ``json`` to name the exact file and line of each problem. Every record
carries its origin (file, line) into the manifest.

Problems (malformed JSON, non-UTF-8 bytes, missing or non-string text field, empty
file, record larger than ``max_record_bytes``) raise :class:`InputError` naming file and
line when ``on_error="fail"``; with ``"skip"`` they are appended to ``problems`` and the
record is left out — never silently.
"""

from __future__ import annotations

import json
import mmap
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from proofmesh.errors import InputError

BLOCK_BYTES = 8 << 20
DEFAULT_MAX_RECORD_BYTES = 16 << 20
TEXT_SUFFIXES = {".txt", ".md", ".text", ".rst"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


@dataclass
class Problem:
    """One input problem: where, and what."""

    file: str
    line: int          # 1-based line (JSONL), row (Parquet, 1-based) or 0 for a whole file
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


@dataclass
class RawBatch:
    """Raw (not yet normalised) texts and where each came from."""

    texts: pa.Array            # large_string
    file: str
    lines: np.ndarray          # int64, 1-based line or row of each text (0: the whole file)
    files: list[str] | None = None   # per-record file names (a folder of text files)

    def origins(self) -> list[str]:
        """``file:line`` (or the file alone) of every record, for manifests and errors."""
        if self.files is not None:
            return list(self.files)
        return [f"{self.file}:{ln}" if ln else self.file for ln in self.lines.tolist()]


@dataclass
class ReadOptions:
    text_field: str = "text"
    on_error: str = "fail"                       # "fail" | "skip"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    block_bytes: int = BLOCK_BYTES
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ("fail", "skip"):
            raise InputError(f"--on-error must be 'fail' or 'skip', got {self.on_error!r}",
                             fix="pass --on-error fail (stop at the first problem) or skip")

    def problem(self, file: str, line: int, reason: str, fix: str) -> None:
        p = Problem(str(file), line, reason)
        if self.on_error == "fail":
            raise InputError(str(p), fix=f"{fix}, or pass --on-error skip to leave such records out")
        self.problems.append(p)


def input_files(path: str | Path) -> list[Path]:
    """The files a path stands for: itself, or every readable file under a folder (sorted)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist", fix="pass an existing file or folder")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    if not files:
        raise InputError(f"folder {p} contains no files", fix="point at a folder of .txt/.jsonl/.parquet files")
    return files


PREFETCH = 2      # blocks read ahead by the reader thread (memory: this many blocks more)


def read_records(path: str | Path, text_field: str = "text", on_error: str = "fail",
                 options: ReadOptions | None = None) -> Iterator[RawBatch]:
    """Stream every record under ``path`` as :class:`RawBatch` es.

    A reader thread scans the next blocks while the caller works on the current one (the
    compiled kernels release the GIL), so reading overlaps normalising and hashing; problems
    and exceptions arrive in input order, exactly as without the thread."""
    opts = options or ReadOptions(text_field=text_field, on_error=on_error)
    files = input_files(path)                  # a missing path fails here, in the caller
    return _prefetched(_read_files(files, opts), PREFETCH)


def _prefetched(items: Iterator[RawBatch], depth: int) -> Iterator[RawBatch]:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except Exception as exc:  # handed to the consumer, in order
            q.put((done, exc))

    worker = threading.Thread(target=produce, name="proofmesh-reader", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():               # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)


def _read_files(files: list[Path], opts: ReadOptions) -> Iterator[RawBatch]:
    text_batch: list[str] = []
    text_file_lines: list[str] = []
    for f in files:
        suffix = f.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            yield from _read_jsonl(f, opts)
        elif suffix in PARQUET_SUFFIXES:
            yield from _read_parquet(f, opts)
        else:
            t = _read_text_file(f, opts)
            if t is not None:
                text_batch.append(t)
                text_file_lines.append(str(f))
                if len(text_batch) >= 4096:
                    yield from _text_files_batch(text_batch, text_file_lines)
                    text_batch, text_file_lines = [], []
    if text_batch:
        yield from _text_files_batch(text_batch, text_file_lines)


def _text_files_batch(texts: list[str], files: list[str]) -> Iterator[RawBatch]:
    # One record per file, many files per batch (per-batch work has a fixed cost).
    yield RawBatch(pa.array(texts, pa.large_string()), files[0], np.zeros(len(texts), dtype=np.int64),
                   files=list(files))


def _read_text_file(f: Path, opts: ReadOptions) -> str | None:
    size = f.stat().st_size
    if size == 0:
        opts.problem(str(f), 0, "empty file", "remove the empty file")
        return None
    if size > opts.max_record_bytes:
        opts.problem(str(f), 0, f"record of {size / 1e6:.1f} MB exceeds the "
                     f"{opts.max_record_bytes / 1e6:.0f} MB limit",
                     "split the file or raise --max-record-bytes")
        return None
    raw = f.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        opts.problem(str(f), 0, f"not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})",
                     "convert the file to UTF-8")
        return None


def _read_jsonl(f: Path, opts: ReadOptions) -> Iterator[RawBatch]:
    size = f.stat().st_size
    if size == 0:
        opts.problem(str(f), 0, "empty file", "remove the empty file")
        return
    n_problems = len(opts.problems)
    any_record = False
    for batch in _read_jsonl_range(f, 0, size, 0, opts):
        any_record = True
        yield batch
    if not any_record and len(opts.problems) == n_problems:
        opts.problem(str(f), 0, "no records (only blank lines)", "remove the file")


def _read_jsonl_range(f: Path, start: int, end: int, line_base: int, opts: ReadOptions) -> Iterator[RawBatch]:
    """Records of the byte range [start, end) of a JSONL file whose first line is ``line_base + 1``
    (``start`` and ``end`` on line boundaries; the Ray path reads shards this way).

    The file is memory-mapped and scanned in place, a block of whole lines at a time: no
    read copy, no concatenation of a partial line. Pages already scanned are dropped from
    the mapping (``MADV_DONTNEED``), so resident memory stays bounded by the block size on
    a file of any size."""
    if end <= start:
        return
    with open(f, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos = start
        dropped = start - start % mmap.PAGESIZE
        while pos < end:
            lim = min(end, pos + opts.block_bytes)
            cut = end if lim == end else mm.rfind(b"\n", pos, lim) + 1
            if cut == 0:               # no newline in a whole block: one line longer than a block
                nl = mm.find(b"\n", lim, end)
                line_end = end if nl < 0 else nl + 1
                if line_end - pos - (nl >= 0) > opts.max_record_bytes:
                    opts.problem(str(f), line_base + 1,
                                 f"record of over {(line_end - pos) / 1e6:.0f} MB exceeds the "
                                 f"{opts.max_record_bytes / 1e6:.0f} MB limit",
                                 "split the record or raise --max-record-bytes")
                    pos = line_end     # skipped without being parsed
                    line_base += 1
                    continue
                cut = line_end
            with memoryview(mm) as whole, whole[pos:cut] as body:
                batch, nlines = _parse_block(f, body, line_base, opts)
            line_base += nlines
            pos = cut
            if hasattr(mm, "madvise") and pos - dropped >= mmap.PAGESIZE:
                upto = pos - pos % mmap.PAGESIZE
                mm.madvise(mmap.MADV_DONTNEED, dropped, upto - dropped)
                dropped = upto
            if batch is not None and len(batch.texts):
                yield batch
    finally:
        try:
            mm.close()
        except BufferError:            # a view is still referenced (by a traceback): GC closes it
            pass


def _parse_block(f: Path, body: memoryview, line_base: int, opts: ReadOptions) -> tuple[RawBatch | None, int]:
    """The records of a block of whole lines, and how many lines it held."""
    from proofmesh.data.jsonl import scan_block

    data, offsets, ok_idx, flagged, nlines = scan_block(body, opts.text_field, opts.max_record_bytes)
    texts = pa.LargeStringArray.from_buffers(len(ok_idx), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        texts.validate(full=True)       # UTF-8 check of every accepted value, in C++
    except pa.ArrowInvalid:
        return _parse_slow(f, bytes(body), line_base, opts), nlines   # rare: Python names the bad lines
    lines = ok_idx.astype(np.int64) + line_base + 1
    if flagged.size == 0:
        return RawBatch(texts, str(f), lines), nlines
    raw_lines = bytes(body).split(b"\n")
    extra = _parse_slow_lines(f, [(int(i), raw_lines[int(i)]) for i in flagged], line_base, opts)
    if not extra:
        return RawBatch(texts, str(f), lines), nlines
    all_lines = np.concatenate([lines, np.asarray([ln for ln, _ in extra], dtype=np.int64)])
    merged = pa.concat_arrays([texts, pa.array([t for _, t in extra], pa.large_string())])
    order = np.argsort(all_lines, kind="stable")
    return RawBatch(merged.take(pa.array(order)), str(f), all_lines[order]), nlines


def _parse_slow(f: Path, body: bytes, line_base: int, opts: ReadOptions) -> RawBatch:
    """Line-by-line parse of a whole block (used when the block held invalid UTF-8)."""
    got = _parse_slow_lines(f, list(enumerate(body.split(b"\n"))), line_base, opts)
    return RawBatch(pa.array([t for _, t in got], pa.large_string()), str(f),
                    np.asarray([ln for ln, _ in got], dtype=np.int64))


def _parse_slow_lines(f: Path, numbered: list[tuple[int, bytes]], line_base: int,
                      opts: ReadOptions) -> list[tuple[int, str]]:
    """Parse lines with Python's json, naming each problem by file and line."""
    out: list[tuple[int, str]] = []
    field_name = opts.text_field
    for i, raw in numbered:
        lineno = line_base + i + 1
        if not raw.strip():
            continue
        if len(raw) > opts.max_record_bytes:
            opts.problem(str(f), lineno, f"record of {len(raw) / 1e6:.1f} MB exceeds the "
                         f"{opts.max_record_bytes / 1e6:.0f} MB limit",
                         "split the record or raise --max-record-bytes")
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            opts.problem(str(f), lineno, f"not UTF-8 (byte {exc.start} of the line)",
                         "convert the file to UTF-8")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            opts.problem(str(f), lineno, f"malformed JSON ({exc.msg} at column {exc.colno})",
                         "fix the line so it is one JSON object")
            continue
        if not isinstance(obj, dict) or field_name not in obj:
            opts.problem(str(f), lineno, f"no {field_name!r} field",
                         "pass --text-field with the field that holds the text")
            continue
        value = obj[field_name]
        if not isinstance(value, str):
            opts.problem(str(f), lineno, f"field {field_name!r} is {type(value).__name__}, not a string",
                         "make the field a string or choose another --text-field")
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            opts.problem(str(f), lineno, f"field {field_name!r} holds a lone UTF-16 surrogate escape",
                         "fix the \\u escape in that line")
            continue
        out.append((lineno, value))
    return out


def _read_parquet(f: Path, opts: ReadOptions) -> Iterator[RawBatch]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as exc:
        opts.problem(str(f), 0, f"not a readable Parquet file ({exc})", "check the file")
        return
    names = pf.schema_arrow.names
    if opts.text_field not in names:
        raise InputError(f"{f}: no column {opts.text_field!r} (columns: {names})",
                         fix="pass --text-field with one of those columns")
    if pf.metadata.num_rows == 0:
        opts.problem(str(f), 0, "no rows", "remove the empty file")
        return
    row = 0
    for rb in pf.iter_batches(batch_size=65536, columns=[opts.text_field]):
        col = rb.column(0)
        n = len(col)
        rows = np.arange(row + 1, row + n + 1, dtype=np.int64)
        row += n
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            raise InputError(f"{f}: column {opts.text_field!r} is {col.type}, not a string",
                             fix="choose a string column with --text-field")
        col = col.cast(pa.large_string())
        ok = np.ones(n, dtype=bool)
        if col.null_count:
            nulls = np.asarray(col.is_null())
            for r in rows[nulls].tolist():
                opts.problem(str(f), int(r), f"row has no {opts.text_field!r} value (null)",
                             "fill the value or drop the row")
            ok &= ~nulls
        lengths = np.asarray(pa.compute.binary_length(col).fill_null(0))
        too_big = lengths > opts.max_record_bytes
        for r in rows[too_big].tolist():
            opts.problem(str(f), int(r), "record exceeds the size limit",
                         "split the record or raise --max-record-bytes")
        ok &= ~too_big
        if not ok.all():
            col = col.filter(pa.array(ok))
            rows = rows[ok]
        yield RawBatch(col, str(f), rows)


def file_size(path: str | Path) -> int:
    """Total bytes under ``path`` (for progress bars)."""
    return sum(os.path.getsize(f) for f in input_files(path))
