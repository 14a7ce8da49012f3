"""The submission's process: it imports the submission and runs its methods on the inputs the
grader sends, and sends back plain numbers.  It computes no verdict and knows none.

This file is a program of its own (``python -I child.py``): it imports the standard library
and numpy only, never SymPy, the checker or the rest of the package (an import-linter
contract says so), because inside the sandbox the package is not even visible.  The grader
(:mod:`symbackprop.grading.remote`) imports the same file for the wire format, so that both
ends share one codec.

The wire format
---------------
A *frame* is an 8-byte big-endian length followed by that many bytes (at most
:data:`FRAME_BYTES`): a 4-byte length, a JSON document, then the arrays it refers to, each an
``.npy`` file (``allow_pickle=False``; dtypes of kind float, int, unsigned or bool only, at most
:data:`MAX_NDIM` dimensions and :data:`ARRAY_BYTES` bytes).  Values in the JSON document are
tagged lists: ``["n"]`` None, ``["b", x]``, ``["i", x]``, ``["f", x]``, ``["l", [...]]``,
``["t", [...]]``, ``["d", [[key, value], ...]]`` (keys str or int), ``["s", blob]`` a numpy
scalar, ``["a", blob, handle, view]`` an array, ``["r", handle]`` an array the other side
already has, ``["m"]`` a method, ``["o", handle]`` an object of the submission.  Nothing else
exists: an object that is none of these is refused here and, whatever a hostile child sends
instead, refused again by the grader.

Arrays are shared, as they would be in one process: every array that crossed the pipe has a
*handle* (the grader's negative, the child's positive), and each request carries the arrays
the grader changed since (``push``), each reply the arrays the child changed (``pull``), so
that a layer that writes into its input, keeps a parameter by reference or returns a view of
``dout`` looks the same to the checker as it would in one process.  A view is sent as its
owner (a handle) with the offset, shape, strides and dtype of the view.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import json
import os
import resource
import signal
import struct
import sys
import traceback
import warnings

import numpy as np

#: Largest frame either side accepts.
FRAME_BYTES = 64 << 20
#: Largest array, in bytes, and most dimensions.
ARRAY_BYTES = 16 << 20
MAX_NDIM = 8
#: Deepest nesting of lists, tuples and dicts, and most items in one value.
MAX_DEPTH, MAX_ITEMS = 8, 10_000
#: Longest text (an exception's message) sent, in characters.
MAX_TEXT = 2000
#: Memory held back so that a submission that exhausted its memory can still be answered for.
RESERVE_BYTES = 8 << 20
_HEAD = struct.Struct(">Q")
_JSON_HEAD = struct.Struct(">I")
_NDARRAY = np.ndarray
_BASE = np.ndarray.base.__get__
_VIEW = np.ndarray.view
_write_array = np.lib.format.write_array


class ProtocolError(Exception):
    """A frame or a value that breaks the wire format."""


# -- frames ----------------------------------------------------------------------------------------
def write_frame(fd: int, doc: dict, blobs: list[bytes]) -> None:
    """Send one frame: ``doc`` (JSON) and the ``.npy`` blobs it refers to."""
    text = json.dumps({**doc, "blobs": [len(b) for b in blobs]}, allow_nan=True).encode()
    payload = b"".join([_JSON_HEAD.pack(len(text)), text, *blobs])
    data = memoryview(_HEAD.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def read_frame(fd: int, read=None) -> tuple[dict, list[bytes]]:
    """Receive one frame: the JSON document and its blobs.

    Raises
    ------
    EOFError
        The other side closed the pipe (before or within a frame).
    ProtocolError
        A frame over :data:`FRAME_BYTES`, or one whose parts do not add up.
    """
    read = read or (lambda n: _read_exact(fd, n))
    (size,) = _HEAD.unpack(read(_HEAD.size))
    if size > FRAME_BYTES:
        raise ProtocolError(f"a frame of {size} bytes (at most {FRAME_BYTES})")
    payload = read(size)
    if size < _JSON_HEAD.size:
        raise ProtocolError("a frame too short")
    (length,) = _JSON_HEAD.unpack_from(payload)
    try:
        doc = json.loads(payload[_JSON_HEAD.size:_JSON_HEAD.size + length])
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON document: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("blobs"), list) \
            or not all(type(n) is int and n >= 0 for n in doc["blobs"]):
        raise ProtocolError("no list of blob lengths")
    start = _JSON_HEAD.size + length
    if start + sum(doc["blobs"]) != size:
        raise ProtocolError("blob lengths do not add up to the frame")
    blobs = []
    for n in doc["blobs"]:
        blobs.append(payload[start:start + n])
        start += n
    return doc, blobs


def _read_exact(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the pipe was closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


# -- arrays ------------------------------------------------------------------------------------------
def array_bytes(array: np.ndarray) -> bytes:
    """An ``.npy`` file of ``array``'s values (a plain ndarray view of it: no subclass, no pickle)."""
    out = io.BytesIO()
    _write_array(out, _VIEW(array, _NDARRAY), allow_pickle=False)
    return out.getvalue()


def allowed_dtype(dtype: np.dtype) -> bool:
    """Float, int, unsigned or bool; no fields, no sub-arrays, no objects."""
    return dtype.kind in "fiub" and dtype.fields is None and dtype.subdtype is None and not dtype.hasobject


def load_array(blob: bytes) -> np.ndarray:
    """A writable array from an ``.npy`` blob, its header checked before any data is read.

    Raises
    ------
    ProtocolError
        Not an ``.npy`` file, a dtype other than float/int/bool, more than :data:`MAX_NDIM`
        dimensions, more than :data:`ARRAY_BYTES` bytes, or data that does not fit the header.
    """
    f = io.BytesIO(blob)
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f, max_header_size=4096)
    except Exception as exc:  # noqa: BLE001 - numpy's own messages for a malformed header
        raise ProtocolError(f"not an .npy array: {exc}") from None
    if not allowed_dtype(dtype):
        raise ProtocolError(f"an array of dtype {dtype} (only float, int and bool arrays can be graded)")
    if len(shape) > MAX_NDIM:
        raise ProtocolError(f"an array of {len(shape)} dimensions (at most {MAX_NDIM})")
    size = 1
    for n in shape:
        size *= n
    nbytes = size * dtype.itemsize
    if nbytes > ARRAY_BYTES:
        raise ProtocolError(f"an array of {nbytes} bytes (at most {ARRAY_BYTES})")
    data = blob[f.tell():]
    if len(data) != nbytes:
        raise ProtocolError("an array whose data does not fit its header")
    flat = np.frombuffer(data, dtype=dtype, count=size)
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


def owner_of(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory ``array`` looks at (``array`` itself if it owns it), when
    that owner is contiguous; else ``array``."""
    owner = array
    while isinstance(_BASE(owner), _NDARRAY):
        owner = _BASE(owner)
    if owner is array or not (owner.flags.c_contiguous or owner.flags.f_contiguous) \
            or not allowed_dtype(owner.dtype):
        return array
    return owner


def view_of(array: np.ndarray, owner: np.ndarray) -> list | None:
    """How ``array`` looks at its owner's memory: ``[offset, shape, strides, dtype]``."""
    if array is owner:
        return None
    offset = array.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    return [int(offset), [int(n) for n in array.shape], [int(s) for s in array.strides], array.dtype.str]


def raw_bytes(array: np.ndarray) -> np.ndarray:
    """The memory of a contiguous array as a flat ``uint8`` view (for building views of it)."""
    return array.ravel(order="K").view(np.uint8)


# -- the submission's side ------------------------------------------------------------------------------
class Invalid(Exception):
    """A value that cannot be sent."""


class Server:
    """The child's registry of objects and arrays, and the requests it serves."""

    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.pid = os.getpid()
        self.cls = None
        self.path = ""
        self.objects: dict[int, object] = {}
        self.arrays: dict[int, list] = {}  # handle -> [array, snapshot bytes]
        self.ids: dict[int, int] = {}
        self.next = 1
        self.reserve: bytearray | None = bytearray(RESERVE_BYTES)

    # -- the loop --------------------------------------------------------------------------------------
    def serve(self) -> None:
        write_frame(self.fd_out, {"hello": os.getpid()}, [])
        while True:
            try:
                doc, blobs = read_frame(self.fd_in)
            except EOFError:
                os._exit(0)
            reply, out = self.handle(doc, blobs)
            self.check_fork()
            write_frame(self.fd_out, reply, out)

    def check_fork(self) -> None:
        """A process the submission forked must never speak for it."""
        if os.getpid() != self.pid:
            os._exit(0)

    def handle(self, doc: dict, blobs: list[bytes]) -> tuple[dict, list[bytes]]:
        out: list[bytes] = []
        for h in doc.get("drop", []):
            entry = self.arrays.pop(h, None)
            if entry is not None:
                self.ids.pop(id(entry[0]), None)
            self.objects.pop(h, None)
        for h, k in doc.get("push", []):
            array = self.arrays[h][0]
            array[...] = load_array(blobs[k])
            self.arrays[h][1] = array.tobytes()
        try:
            reply = self.run(doc, blobs, out)
        except MemoryError as exc:
            self.reserve = None
            reply = {"error": self.error("memory", exc)}
        reply["pull"] = self.changed(out)
        return reply, out

    def run(self, doc: dict, blobs: list[bytes], out: list[bytes]) -> dict:
        op = doc.get("op")
        if op == "load":
            return self.load(doc["path"], doc["name"])
        if op == "read":
            return {"value": ["n"]}
        if op == "new":
            args = [self.decode(a, blobs) for a in doc["args"]]
            result = self.user(lambda: self.cls(*args))
            if "error" in result:
                return result
            h = self.new_handle()
            self.objects[h] = result["ok"]
            return {"value": ["o", h]}
        target = self.objects[doc["obj"]]
        if op == "get":
            result = self.user(lambda: getattr(target, doc["name"]), attribute=True)
        else:
            args = [self.decode(a, blobs) for a in doc["args"]]
            result = self.user(lambda: getattr(target, doc["name"])(*args))
        if "error" in result:
            return result
        try:
            return {"value": self.encode(result["ok"], out, 0, what=doc["name"])}
        except Invalid as exc:
            return {"error": {"kind": "invalid", "type": "Invalid", "message": str(exc)[:MAX_TEXT], "where": None}}
        except Exception as exc:  # noqa: BLE001 - a hostile object raising while it is read
            return {"error": self.error("exception", exc)}

    def user(self, call, attribute: bool = False) -> dict:
        """Run the submission's code: ``{"ok": value}`` or ``{"error": ...}``."""
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                value = call()
        except MemoryError as exc:
            self.check_fork()
            self.reserve = None
            return {"error": self.error("memory", exc)}
        except AttributeError as exc:
            self.check_fork()
            return {"error": self.error("attribute" if attribute else "exception", exc)}
        except SystemExit as exc:
            self.check_fork()
            return {"error": {**self.error("exit", exc), "message": _safe(lambda: repr(exc.code))}}
        except Exception as exc:  # noqa: BLE001 - the submission's own bug
            self.check_fork()
            return {"error": self.error("exception", exc)}
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, GeneratorExit, its own
            self.check_fork()
            return {"error": self.error("stop", exc)}
        self.check_fork()
        return {"ok": value}

    def error(self, kind: str, exc: BaseException) -> dict:
        text = " ".join(_safe(lambda: str(exc)).split())[:MAX_TEXT]
        return {"kind": kind, "type": type(exc).__name__[:100], "message": text, "where": self.where(exc)}

    def where(self, exc: BaseException) -> list | None:
        """``[line, function]`` of the last frame in the submission's own file."""
        try:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == self.path]
        except Exception:  # noqa: BLE001
            return None
        return [int(frames[-1].lineno or 0), str(frames[-1].name)[:100]] if frames else None

    # -- loading -------------------------------------------------------------------------------------
    def load(self, path: str, name: str) -> dict:
        self.path = path
        module_spec = importlib.util.spec_from_file_location("submission", path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules["submission"] = module
        sys.path.insert(0, os.path.dirname(path))
        result = self.user(lambda: module_spec.loader.exec_module(module))
        if "error" in result:
            return result
        if "," in name:  # FORWARD,BACKWARD: two functions, called on the module as methods on an object
            missing = [f for f in name.split(",") if not callable(getattr(module, f, None))]
            if missing:
                return {"error": {"kind": "no-function", "type": "", "message": missing[0][:100], "where": None}}
            h = self.new_handle()
            self.objects[h] = module
            return {"info": {"module": h, "functions": [signature(getattr(module, f)) for f in name.split(",")],
                             "classes": []}}
        cls = getattr(module, name, None)
        if cls is None or not callable(cls):
            found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == "submission")
            return {"error": {"kind": "no-class", "type": "", "message": ", ".join(found)[:MAX_TEXT], "where": None}}
        self.cls = cls
        mro = getattr(cls, "__mro__", (cls,)) if isinstance(cls, type) else (cls,)
        classes = [[str(getattr(k, "__name__", "Base"))[:100],
                    signature(k.__dict__["backward"]) if "backward" in getattr(k, "__dict__", {}) else "absent"]
                   for k in mro if k is not object]
        return {"info": {"signature": signature(cls), "classes": classes}}

    # -- values ---------------------------------------------------------------------------------------
    def new_handle(self) -> int:
        h, self.next = self.next, self.next + 1
        return h

    def decode(self, value: list, blobs: list[bytes]):
        tag = value[0]
        if tag == "a":
            array = load_array(blobs[value[1]])
            self.arrays[value[2]] = [array, array.tobytes()]
            self.ids[id(array)] = value[2]
            return array
        if tag == "r":
            return self.arrays[value[1]][0]
        if tag == "s":
            return load_array(blobs[value[1]])[()]
        if tag in ("l", "t"):
            items = [self.decode(v, blobs) for v in value[1]]
            return items if tag == "l" else tuple(items)
        if tag == "d":
            return {k: self.decode(v, blobs) for k, v in value[1]}
        return {"n": lambda: None, "b": lambda: value[1], "i": lambda: value[1], "f": lambda: value[1]}[tag]()

    def encode(self, value, out: list[bytes], depth: int, what: str) -> list:
        if depth > MAX_DEPTH:
            raise Invalid(f"{what} returned values nested more than {MAX_DEPTH} deep")
        if value is None:
            return ["n"]
        if isinstance(value, (bool, np.bool_)) and not isinstance(value, _NDARRAY):
            return ["b", bool(value)]
        if isinstance(value, np.generic):
            array = np.asarray(value)
            if not allowed_dtype(array.dtype):
                raise Invalid(f"{what} gave a numpy {array.dtype} scalar")
            out.append(array_bytes(array))
            return ["s", len(out) - 1]
        if isinstance(value, int):
            return ["i", int(value)]
        if isinstance(value, float):
            return ["f", float(value)]
        if isinstance(value, _NDARRAY):
            return self.encode_array(value, out, what)
        if isinstance(value, (list, tuple)):
            items = list(value)
            if len(items) > MAX_ITEMS:
                raise Invalid(f"{what} gave a sequence of {len(items)} items")
            return ["l" if isinstance(value, list) else "t", [self.encode(v, out, depth + 1, what) for v in items]]
        if isinstance(value, dict):
            if len(value) > MAX_ITEMS:
                raise Invalid(f"{what} gave a dict of {len(value)} items")
            pairs = []
            for k, v in dict.items(value):
                if not (isinstance(k, str) and len(k) <= 200) and not (isinstance(k, int) and not isinstance(k, bool)):
                    raise Invalid(f"{what} gave a dict with a key of type {type(k).__name__}")
                pairs.append([str(k) if isinstance(k, str) else int(k), self.encode(v, out, depth + 1, what)])
            return ["d", pairs]
        if callable(value):
            return ["m"]
        raise Invalid(f"{what} gave a {type(value).__name__[:100]}: only numbers, arrays of numbers (float, int, "
                      "bool), None, and tuples, lists and dicts of them can be graded")

    def encode_array(self, array: np.ndarray, out: list[bytes], what: str) -> list:
        if not allowed_dtype(array.dtype):
            raise Invalid(f"{what} gave an array of dtype {array.dtype}: only float, int and bool arrays can be graded")
        owner = owner_of(array)
        h = self.ids.get(id(owner))
        if h is None or self.arrays.get(h, [None])[0] is not owner:
            h = self.new_handle()
            self.arrays[h] = [owner, owner.tobytes()]
            self.ids[id(owner)] = h
        out.append(array_bytes(owner))
        return ["a", len(out) - 1, h, view_of(array, owner)]

    def changed(self, out: list[bytes]) -> list:
        """The registered arrays whose values changed since the last look, as ``[handle, blob]``."""
        pulls = []
        for h, entry in self.arrays.items():
            now = entry[0].tobytes()
            if now != entry[1]:
                entry[1] = now
                out.append(array_bytes(entry[0]))
                pulls.append([h, len(out) - 1])
        return pulls


def signature(obj) -> list | None:
    """``obj``'s signature as data: ``[[name, kind, default], ...]`` with ``default`` None (none),
    ``["v", number]`` or ``["o"]`` (something else); None when it has none."""
    try:
        params = inspect.signature(obj).parameters.values()
    except Exception:  # noqa: BLE001 - a builtin, a hostile __signature__
        return None
    out = []
    for p in params:
        if p.default is p.empty:
            default = None
        elif isinstance(p.default, (bool, int, float)) and type(p.default) in (bool, int, float):
            default = ["v", p.default]
        else:
            default = ["o"]
        out.append([str(p.name)[:100], int(p.kind), default])
    return out


def _safe(text) -> str:
    try:
        return str(text())
    except Exception:  # noqa: BLE001 - a hostile __str__ or __repr__
        return "<unprintable>"


# -- the process ------------------------------------------------------------------------------------
def _limits(args: dict) -> None:
    for limit, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, args["cpu"]),
                         (resource.RLIMIT_AS, args["memory"]), (resource.RLIMIT_NPROC, args["processes"]),
                         (resource.RLIMIT_FSIZE, args["file_size"])):
        if value is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            _, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, value))


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _drop_to(uid: int) -> None:
    """Become ``uid`` (its own group, no other groups): the sandbox starts as root."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _init(worker: int, alive: int | None) -> None:
    """Process 1 of the sandbox: reap every orphan, leave with the worker's status, or at once
    when the grader is gone (``alive`` reaches end of file): then the kernel ends every process
    of the namespace."""
    import select

    os.closerange(0, alive if alive is not None else 256)
    if alive is not None:
        os.closerange(alive + 1, 256)
    wake, woken = os.pipe()
    os.set_blocking(woken, False)
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(woken)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    while True:
        ready = select.select([wake] + ([alive] if alive is not None else []), [], [], 1.0)[0]
        if alive in ready:
            os._exit(70)
        with contextlib.suppress(OSError):
            os.read(wake, 4096)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                os._exit(70)
            if pid == 0:
                break
            if pid == worker:
                code = os.waitstatus_to_exitcode(status)
                os._exit(128 - code if code < 0 else code)


def _parse(argv: list[str]) -> dict:
    args = {"output_fd": 2, "alive_fd": None, "uid": None, "init": False, "memory": None, "cpu": None, "processes": None,
            "file_size": None}
    it = iter(argv)
    for flag in it:
        key = flag.lstrip("-").replace("-", "_")
        args[key] = True if key == "init" else int(next(it))
    return args


def main(argv: list[str]) -> None:
    """``child.py [--init [--alive-fd N]] [--uid N] --output-fd N --memory N --cpu N --processes N --file-size N``:
    the request pipe on fd 0, the reply pipe on fd 1, the submission's output to ``--output-fd``."""
    args = _parse(argv)
    if args["uid"] is not None:
        _drop_to(args["uid"])
        _die_with_parent()  # a change of user clears the parent-death signal bwrap set
    if args["init"]:
        worker = os.fork()
        if worker:
            _init(worker, args["alive_fd"])
    _die_with_parent()
    fd_in, fd_out = os.dup(0), os.dup(1)
    os.dup2(args["output_fd"], 1)
    os.dup2(args["output_fd"], 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    keep = {0, 1, 2, fd_in, fd_out}
    for fd in range(3, 256):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    if args["init"]:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _limits(args)
    Server(fd_in, fd_out).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
