"""Memory-lean ONNX model I/O.

* ``scan_model`` reads a model *without* materialising large tensor payloads. It is
  the equivalent of ``onnx.load(path, load_external_data=False)`` except that, for
  tensors stored inside the .onnx file itself, big ``raw_data`` fields are not read
  either: they are turned into external-data references that point back into the
  .onnx file (location = the file's own name, offset/length of the payload). Plain
  ``onnx.load`` of a single-file model costs ~2x the file size in RSS (file bytes +
  parsed message); the scan costs only the graph structure.
* ``TensorReader`` pulls one tensor at a time (``np.fromfile`` = plain reads into
  anonymous memory that is freed as soon as the array is dropped).
* ``DataFileWriter`` appends tensor payloads to one external data file as they are
  produced; ``write_single_file`` streams a model whose initializers live in such a
  file into a single self-contained .onnx without ever holding the serialized
  model in memory.
* ``Staging`` writes everything into a private folder beside the output and moves
  the files into place only on success.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import onnx
from onnx import TensorProto

from sphana_bridge.external_paths import check_model_locations, resolve_location
from sphana_bridge.protocol import InputError

# Payloads at least this big are left on disk by the scanner.
LAZY_MIN_BYTES = 1024
# Tensors at least this big go to the external data file (same default as onnx).
EXTERNAL_MIN_BYTES = 1024
COPY_CHUNK = 16 << 20

_WT_VARINT, _WT_I64, _WT_LEN, _WT_I32 = 0, 1, 2, 5

# ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data = 9
_F_MODEL_GRAPH, _F_GRAPH_INIT, _F_TENSOR_RAW = 7, 5, 9


# --------------------------------------------------------------------------------------
# protobuf wire helpers
# --------------------------------------------------------------------------------------


def _read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(field_no: int, wire_type: int) -> bytes:
    return encode_varint((field_no << 3) | wire_type)


def _iter_fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field_no, wire_type, field_start, value_start, field_end)."""
    pos = start
    while pos < end:
        fstart = pos
        key, pos = _read_varint(buf, pos, end)
        field_no, wt = key >> 3, key & 7
        if field_no == 0:
            raise ValueError("invalid field number 0")
        if wt == _WT_VARINT:
            _, pos = _read_varint(buf, pos, end)
            yield field_no, wt, fstart, fstart, pos
            continue
        if wt == _WT_I64:
            vstart, pos = pos, pos + 8
        elif wt == _WT_I32:
            vstart, pos = pos, pos + 4
        elif wt == _WT_LEN:
            length, vstart = _read_varint(buf, pos, end)
            pos = vstart + length
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if pos > end:
            raise ValueError("truncated field")
        yield field_no, wt, fstart, vstart, pos


# --------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------


@dataclass
class ScannedModel:
    path: str  # absolute path of the .onnx file
    model: onnx.ModelProto  # skeleton: big payloads are external references
    file_bytes: int
    # True if the model (as stored) already used external data files
    has_external_data: bool
    external_files: list[str] = field(default_factory=list)  # absolute paths of external data files

    @property
    def base_dir(self) -> str:
        return os.path.dirname(self.path)

    def total_bytes(self) -> int:
        """Size of the .onnx file plus all external data files it references."""
        total = self.file_bytes
        for f in self.external_files:
            try:
                total += os.path.getsize(f)
            except OSError:
                pass
        return total


def _scan_tensor(buf, start: int, end: int, self_location: str) -> TensorProto:
    kept: list[bytes] = []
    lazy: tuple[int, int] | None = None
    for fno, wt, fstart, vstart, fend in _iter_fields(buf, start, end):
        if fno == _F_TENSOR_RAW and wt == _WT_LEN and fend - vstart >= LAZY_MIN_BYTES:
            lazy = (vstart, fend - vstart)
            continue
        kept.append(bytes(buf[fstart:fend]))
    t = TensorProto()
    t.ParseFromString(b"".join(kept))
    if lazy is not None:
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", self_location), ("offset", str(lazy[0])), ("length", str(lazy[1]))):
            e = t.external_data.add()
            e.key, e.value = k, v
    return t


def scan_model(path: str) -> ScannedModel:
    """Parse a model's structure; raise InputError if it is missing or not ONNX."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise InputError(f"input model not found: {path}", {"path": path})
    if os.path.isdir(path):
        raise InputError(f"input model is a directory, not an .onnx file: {path}", {"path": path})
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read input model {path}: {e.strerror or e}", {"path": path}) from None
    self_location = os.path.basename(path)
    try:
        with f:
            if size == 0:
                raise ValueError("empty file")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                top: list[bytes] = []
                graph_parts: list[bytes] = []
                inits: list[TensorProto] = []
                saw_graph = False
                for fno, wt, fstart, vstart, fend in _iter_fields(mm, 0, size):
                    if fno == _F_MODEL_GRAPH and wt == _WT_LEN:
                        saw_graph = True
                        for gno, gwt, gfs, gvs, gfe in _iter_fields(mm, vstart, fend):
                            if gno == _F_GRAPH_INIT and gwt == _WT_LEN:
                                inits.append(_scan_tensor(mm, gvs, gfe, self_location))
                            else:
                                graph_parts.append(bytes(mm[gfs:gfe]))
                    else:
                        top.append(bytes(mm[fstart:fend]))
            finally:
                mm.close()
        model = onnx.ModelProto()
        model.ParseFromString(b"".join(top))
        if not saw_graph:
            raise ValueError("no graph")
        model.graph.ParseFromString(b"".join(graph_parts))
        model.graph.initializer.extend(inits)
    except InputError:
        raise
    except Exception as e:  # protobuf DecodeError, ValueError from the scanner, ...
        raise InputError(
            f"input is not a readable ONNX model: {path} ({type(e).__name__}: {e})", {"path": path}
        ) from None
    if model.ir_version <= 0 or len(model.opset_import) == 0 or len(model.graph.node) == 0:
        raise InputError(
            f"input is not a valid ONNX model (ir_version={model.ir_version}, "
            f"opsets={len(model.opset_import)}, nodes={len(model.graph.node)}): {path}",
            {"path": path},
        )

    base = os.path.dirname(path)
    # Defence in depth: every location is validated here, before any external file is opened.
    check_model_locations(model, base)
    ext_files: list[str] = []
    has_ext = False
    for t in iter_all_tensors(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = external_info(t)
        loc = info.get("location", "")
        if loc == self_location and _points_into_self(info, size):
            continue  # our own lazy reference
        has_ext = True
        full = os.path.normpath(os.path.join(base, loc))
        if full not in ext_files:
            ext_files.append(full)
    for full in ext_files:
        if not os.path.isfile(full):
            raise InputError(
                f"external data file referenced by the model is missing: {full}", {"path": path, "missing": full}
            )
    # bounds check every external reference (cheap: stat only)
    sizes = {f: os.path.getsize(f) for f in ext_files}
    sizes[path] = size
    for t in iter_all_tensors(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = external_info(t)
        full = os.path.normpath(os.path.join(base, info.get("location", "")))
        off = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") else tensor_nbytes(t)
        if full in sizes and off + length > sizes[full]:
            raise InputError(
                f"tensor {t.name!r} points past the end of {full}", {"path": path, "tensor": t.name, "file": full}
            )
    return ScannedModel(path=path, model=model, file_bytes=size, has_external_data=has_ext, external_files=ext_files)


def _points_into_self(info: dict[str, str], size: int) -> bool:
    try:
        off = int(info.get("offset", "0") or 0)
        length = int(info.get("length", "0") or 0)
    except ValueError:
        return False
    return 0 < off and off + length <= size


def iter_all_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Initializers of the main graph and of subgraphs, plus tensor attributes."""

    def from_graph(g: onnx.GraphProto) -> Iterator[TensorProto]:
        yield from g.initializer
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("g"):
                    yield from from_graph(a.g)
                for sg in a.graphs:
                    yield from from_graph(sg)

    yield from from_graph(model.graph)


def external_info(t: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


_NP_DTYPES: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.BOOL: np.dtype(np.bool_),
}


def numel(t: TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= int(d)
    return n


def tensor_nbytes(t: TensorProto) -> int:
    """Payload size of a tensor (from dims/type; exact for fixed-size types)."""
    if t.data_type == TensorProto.BFLOAT16:
        return numel(t) * 2
    dt = _NP_DTYPES.get(t.data_type)
    if dt is None:
        if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
            return (numel(t) + 1) // 2
        if t.HasField("raw_data"):
            return len(t.raw_data)
        return 0
    return numel(t) * dt.itemsize


def is_external(t: TensorProto) -> bool:
    return t.data_location == TensorProto.EXTERNAL


class TensorReader:
    """Reads tensors of a scanned model on demand."""

    def __init__(self, scanned: ScannedModel):
        self.scanned = scanned
        self.base = scanned.base_dir

    def _locate(self, t: TensorProto) -> tuple[str, int, int]:
        info = external_info(t)
        full = resolve_location(self.base, info.get("location", ""), t.name)  # never opens an unsafe path
        off = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") else tensor_nbytes(t)
        return full, off, length

    def read_bytes_chunks(self, t: TensorProto, chunk: int = COPY_CHUNK) -> Iterator[bytes]:
        """Raw little-endian payload of a tensor (as stored), in chunks."""
        if not is_external(t):
            if t.HasField("raw_data"):
                data = t.raw_data
            else:
                data = onnx.numpy_helper.to_array(t).tobytes()
            for i in range(0, len(data), chunk):
                yield data[i : i + chunk]
            return
        full, off, length = self._locate(t)
        with open(full, "rb") as f:
            f.seek(off)
            remaining = length
            while remaining > 0:
                b = f.read(min(chunk, remaining))
                if not b:
                    raise InputError(f"unexpected end of data for tensor {t.name!r} in {full}", {"file": full})
                remaining -= len(b)
                yield b

    def payload_len(self, t: TensorProto) -> int:
        if not is_external(t):
            if t.HasField("raw_data"):
                return len(t.raw_data)
            return len(onnx.numpy_helper.to_array(t).tobytes())
        return self._locate(t)[2]

    def read_array(self, t: TensorProto) -> np.ndarray:
        """Whole tensor as a numpy array (anonymous memory; freed when dropped)."""
        if not is_external(t):
            return onnx.numpy_helper.to_array(t)
        dt = _NP_DTYPES.get(t.data_type)
        if dt is None:
            raise ValueError(f"unsupported external tensor type {t.data_type} for {t.name!r}")
        full, off, length = self._locate(t)
        count = numel(t)
        if length < count * dt.itemsize:
            raise InputError(f"external data for {t.name!r} is too short", {"tensor": t.name, "file": full})
        arr = np.fromfile(full, dtype=dt.newbyteorder("<"), count=count, offset=off)
        return arr.reshape(tuple(int(d) for d in t.dims))


    def read_rows(self, t: TensorProto, r0: int, r1: int) -> np.ndarray:
        """Rows [r0, r1) of a tensor along its first axis (only those bytes are read)."""
        shape = tuple(int(d) for d in t.dims)
        if not is_external(t):
            return onnx.numpy_helper.to_array(t)[r0:r1]
        dt = _NP_DTYPES.get(t.data_type)
        if dt is None:
            raise ValueError(f"unsupported external tensor type {t.data_type} for {t.name!r}")
        full, off, _length = self._locate(t)
        row = 1
        for d in shape[1:]:
            row *= d
        arr = np.fromfile(full, dtype=dt.newbyteorder("<"), count=(r1 - r0) * row, offset=off + r0 * row * dt.itemsize)
        return arr.reshape((r1 - r0,) + shape[1:])

    def iter_rows(self, t: TensorProto, chunk_bytes: int, multiple: int = 1) -> Iterator[tuple[int, int, np.ndarray]]:
        """Row chunks of about ``chunk_bytes`` (a multiple of ``multiple`` rows)."""
        shape = tuple(int(d) for d in t.dims)
        rows = shape[0] if shape else 1
        row_bytes = max(1, tensor_nbytes(t) // max(1, rows))
        step = max(multiple, (chunk_bytes // row_bytes) // multiple * multiple)
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            yield r0, r1, self.read_rows(t, r0, r1)


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def set_external(t: TensorProto, location: str, offset: int, length: int) -> None:
    t.ClearField("raw_data")
    for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        t.ClearField(f)
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v


class DataFileWriter:
    """Appends tensor payloads to one external data file; ``fsync=False`` for a file that is
    copied into a single-file model and deleted (its pages then need never reach the disk)."""

    def __init__(self, path: str, fsync: bool = True):
        self.path = path
        self.location = os.path.basename(path)
        self._f = open(path, "wb")
        self.pos = 0
        self._fsync = fsync

    def _align(self, nbytes: int) -> None:
        align = 4096 if nbytes >= (1 << 20) else 64
        pad = (-self.pos) % align
        if pad:
            self._f.write(b"\0" * pad)
            self.pos += pad

    def append_array(self, arr: np.ndarray) -> tuple[int, int]:
        arr = np.ascontiguousarray(arr)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        self._align(arr.nbytes)
        off = self.pos
        self._f.write(memoryview(arr.reshape(-1)).cast("B"))
        self.pos += arr.nbytes
        return off, arr.nbytes

    def append_chunks(self, chunks: Iterable[bytes], nbytes: int) -> tuple[int, int]:
        self._align(nbytes)
        off = self.pos
        written = 0
        for c in chunks:
            self._f.write(c)
            written += len(c)
        self.pos += written
        if written != nbytes:
            raise ValueError(f"expected {nbytes} bytes, wrote {written}")
        return off, written

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            if self._fsync:
                os.fsync(self._f.fileno())
            self._f.close()


def _tensor_header(t: TensorProto) -> TensorProto:
    h = TensorProto()
    h.CopyFrom(t)
    h.ClearField("raw_data")
    h.ClearField("data_location")
    del h.external_data[:]
    return h


def single_file_size(model: onnx.ModelProto, data_location: str) -> int:
    """Exact size of ``write_single_file`` output for a model whose big tensors live in
    ``data_location`` (lengths are taken from the external_data entries)."""
    return _single_file_plan(model, data_location)[0]


def _single_file_plan(model: onnx.ModelProto, data_location: str):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = list(g.initializer)
    g.ClearField("initializer")
    graph_bytes = g.SerializeToString()
    m.ClearField("graph")
    model_bytes = m.SerializeToString()
    pieces = []  # (header_bytes, payload_offset or None, payload_len, inline_bytes)
    graph_len = len(graph_bytes)
    for t in inits:
        if is_external(t) and external_info(t).get("location") == data_location:
            info = external_info(t)
            off, length = int(info.get("offset", "0")), int(info["length"])
            hdr = _tensor_header(t).SerializeToString()
            body_len = len(hdr) + len(_tag(_F_TENSOR_RAW, _WT_LEN)) + len(encode_varint(length)) + length
            pieces.append((hdr, off, length, None, body_len))
        else:
            b = t.SerializeToString()
            body_len = len(b)
            pieces.append((None, None, 0, b, body_len))
        graph_len += len(_tag(_F_GRAPH_INIT, _WT_LEN)) + len(encode_varint(body_len)) + body_len
    total = len(model_bytes) + len(_tag(_F_MODEL_GRAPH, _WT_LEN)) + len(encode_varint(graph_len)) + graph_len
    return total, model_bytes, graph_bytes, graph_len, pieces


def write_single_file(model: onnx.ModelProto, data_path: str, out_path: str) -> int:
    """Write ``model`` as one self-contained .onnx, streaming the payloads of tensors
    that reference ``data_path`` (by basename) from that file. Returns bytes written."""
    location = os.path.basename(data_path)
    with open(data_path, "rb") as src:

        def payload(out, off: int, length: int) -> None:
            src.seek(off)
            remaining = length
            while remaining:
                b = src.read(min(COPY_CHUNK, remaining))
                if not b:
                    raise IOError(f"unexpected end of {data_path}")
                out.write(b)
                remaining -= len(b)

        return _write_planned(model, location, out_path, payload)


def _write_planned(model: onnx.ModelProto, location: str, out_path: str, payload, fsync: bool = True) -> int:
    """The single-file layout of ``_single_file_plan``: ``payload(out, offset, length)`` writes
    the raw bytes of each tensor that references ``location``. Returns bytes written."""
    total, model_bytes, graph_bytes, graph_len, pieces = _single_file_plan(model, location)
    with open(out_path, "wb") as out:
        out.write(model_bytes)
        out.write(_tag(_F_MODEL_GRAPH, _WT_LEN) + encode_varint(graph_len))
        out.write(graph_bytes)
        for hdr, off, length, inline, body_len in pieces:
            out.write(_tag(_F_GRAPH_INIT, _WT_LEN) + encode_varint(body_len))
            if inline is not None:
                out.write(inline)
                continue
            out.write(hdr)
            out.write(_tag(_F_TENSOR_RAW, _WT_LEN) + encode_varint(length))
            start = out.tell()
            payload(out, off, length)
            if out.tell() - start != length:
                raise RuntimeError(f"single-file writer: a payload of {out.tell() - start} bytes where {length} were planned")
        out.flush()
        written = out.tell()
        if fsync:
            os.fsync(out.fileno())
    if written != total:
        raise RuntimeError(f"single-file writer size mismatch: planned {total}, wrote {written}")
    return written


# The location an initializer is given while an onnx_ir model is serialized without its payloads.
_INLINE_LOCATION = "__sphana_inline__"


def save_ir_single_file(model, path: str, progress=None, fsync: bool = False) -> int:
    """Save an ``onnx_ir`` model as one self-contained .onnx with one write of each weight.

    ``ir.save`` without external data copies every payload into the ModelProto, then
    serializes that message into one more copy before writing it (three copies of the weights in
    memory, ~1 s per 500 MB on 2 cores). Here the model is serialized with its big initializers
    standing in as references (a graph of a few MB), and each payload is written straight from
    its tensor's memory (``tofile``) into its place in the protobuf; the file's bytes are the
    same message. ``progress(done_bytes, total_bytes)`` is called after each payload. Returns
    bytes written. The model is unchanged afterwards."""
    import onnx_ir as ir
    from onnx_ir import serde

    values = [v for g in model.graphs() for v in g.initializers.values()]
    originals = [v.const_value for v in values]
    payloads: list = []
    try:
        for v, t in zip(values, originals):
            if t is None or int(t.nbytes) < EXTERNAL_MIN_BYTES:
                continue
            v.const_value = ir.ExternalTensor(
                _INLINE_LOCATION, len(payloads), int(t.nbytes), t.dtype, shape=t.shape, name=v.name, base_dir=""
            )
            payloads.append(t)
        proto = serde.serialize_model(model)
    finally:
        for v, t in zip(values, originals):
            v.const_value = t
    total = sum(int(t.nbytes) for t in payloads) or 1
    done = [0]

    def payload(out, index: int, length: int) -> None:
        payloads[index].tofile(out)
        done[0] += length
        if progress:
            progress(done[0], total)

    return _write_planned(proto, _INLINE_LOCATION, path, payload, fsync=fsync)


# --------------------------------------------------------------------------------------
# staging
# --------------------------------------------------------------------------------------


class Staging:
    """Private work folder beside the requested output; atomic-ish commit."""

    def __init__(self, output: str):
        self.output = os.path.abspath(output)
        self.out_dir = os.path.dirname(self.output)
        self.name = os.path.basename(self.output)
        self.data_name = self.name + ".data"
        self.dir = tempfile.mkdtemp(prefix=f".{self.name}.sphana-", dir=self.out_dir)
        self.onnx_path = os.path.join(self.dir, self.name)
        self.data_path = os.path.join(self.dir, self.data_name)
        self._moved: list[str] = []

    @property
    def final_data(self) -> str:
        return os.path.join(self.out_dir, self.data_name)

    def commit(self, with_data: bool) -> list[str]:
        """Move the staged .onnx (and .data) into place. Returns final paths."""
        finals = []
        umask = os.umask(0)
        os.umask(umask)
        for p in (self.onnx_path, self.data_path):
            if os.path.exists(p):
                os.chmod(p, 0o666 & ~umask)
        if with_data:
            if not os.path.isfile(self.data_path):
                raise RuntimeError("staged external data file is missing")
            os.replace(self.data_path, self.final_data)
            self._moved.append(self.final_data)
        os.replace(self.onnx_path, self.output)
        self._moved.append(self.output)
        finals.append(self.output)
        if with_data:
            finals.append(self.final_data)
        elif os.path.exists(self.final_data):
            # a stale data file from an earlier run would confuse consumers
            os.remove(self.final_data)
        self.cleanup()
        return finals

    def abort(self) -> None:
        for p in self._moved:
            try:
                os.remove(p)
            except OSError:
                pass
        self._moved.clear()
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
