"""The grader's side of a submission's process: a layer class whose methods run over there.

:class:`Session` talks to :mod:`symbackprop.grading.child` over two pipes; :meth:`Session.layer_class`
gives a class (a :class:`RemoteLayer`) that has the layer protocol (constructor, ``forward``,
``backward``, attributes such as ``dW`` or ``params``, the signatures the checker looks at) and
is handed to :func:`symbackprop.checker.verify_layer` like any class.  Every comparison, finding
and verdict is then computed here, from the declaration and the numbers that came back; the
child only ever sends numbers, and whatever else it sends is refused (:class:`Invalid`).

Arrays behave as in one process (see the wire format in :mod:`~symbackprop.grading.child`): an
array the grader passed and the child changed is changed here before the call returns, an
array the child returned changes here when the child changes it later, and a view of ``dout``
comes back as a view of the grader's ``dout`` (so ``np.shares_memory`` tells the truth).
:meth:`Session.current` reads the current contents of what a method returned earlier.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import select
import subprocess
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..checker.pairs import function_pair
from .child import (
    MAX_DEPTH,
    MAX_NDIM,
    MAX_TEXT,
    ProtocolError,
    allowed_dtype,
    array_bytes,
    load_array,
    raw_bytes,
    read_frame,
    write_frame,
)

#: Bytes of arrays the grader keeps in step with the child, at most.
MIRROR_BYTES = 128 << 20
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}\Z")
_FUNCTION = re.compile(r"[A-Za-z_<>][A-Za-z0-9_<>.]{0,99}\Z")
_OPAQUE = object()  # a __signature__ that inspect refuses: "no signature", as for a builtin


class Invalid(BaseException):
    """The child sent something that is not plain numeric data (or broke the wire format).
    A BaseException, so that the checker, which reports a layer's ``Exception``, stops."""


class OutOfMemory(BaseException):
    """The submission ran out of memory in ``phase`` (``forward``, ``importing it``, ...)."""

    def __init__(self, phase: str, name: str, where: str):
        super().__init__(phase)
        self.phase, self.name, self.where = phase, name, where


class Stopped(BaseException):
    """The submission called ``sys.exit`` or raised a BaseException: the check stops."""

    def __init__(self, description: str, where: str):
        super().__init__(description)
        self.description, self.where = description, where


class ChildGone(BaseException):
    """The submission's process died before answering."""


class LoadFailed(Exception):
    """The submission could not be loaded: ``kind`` and a one-line ``message``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def one_line(text: Any) -> str:
    """Text from the child, as one line of at most :data:`MAX_TEXT` characters."""
    return " ".join(str(text).split())[:MAX_TEXT] if isinstance(text, str) else ""


def _where(where: Any, filename: str) -> str:
    if not (isinstance(where, list) and len(where) == 2 and type(where[0]) is int
            and isinstance(where[1], str) and _FUNCTION.match(where[1])):
        return ""
    return f" (at {filename}:{where[0]} in {where[1]})"


class Session:
    """One submission's process: requests, replies and the arrays kept in step.

    Parameters
    ----------
    process : subprocess.Popen
        The child (or the sandbox around it).
    to_child, from_child : int
        The write end of its request pipe and the read end of its reply pipe.
    setup : int
        The read end of its stderr before it says hello (the sandbox's own complaints).
    filename : str
        The submission's file name, for ``(at FILE:LINE in FUNCTION)``.
    """

    def __init__(self, process: subprocess.Popen, to_child: int, from_child: int, setup: int, filename: str):
        self.process, self.to_child, self.from_child, self.setup = process, to_child, from_child, setup
        self.filename = filename
        self.exit_fd = _pidfd(process.pid)
        self.mirrors: dict[int, list] = {}  # handle -> [weakref to the array, snapshot bytes]
        self.ids: dict[int, int] = {}
        self.dead: list[int] = []
        self.next = -1
        self.errors: dict[str, type] = {}
        self.hello()

    # -- the pipe --------------------------------------------------------------------------------
    def hello(self) -> None:
        try:
            doc, _ = read_frame(self.from_child, self.read)
        except (ChildGone, ProtocolError):
            raise LoadFailed("crash", "the sandbox did not start: " + (self.setup_text() or "no message")) from None
        finally:
            os.close(self.setup)
            self.setup = -1
        if "hello" not in doc:
            raise Invalid("the submission's process did not start as expected")

    def setup_text(self) -> str:
        os.set_blocking(self.setup, False)
        with contextlib.suppress(OSError):
            return one_line(os.read(self.setup, 4096).decode("utf-8", "replace"))
        return ""

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes from the child; :class:`ChildGone` if it dies first."""
        parts, left = [], n
        watch = [self.from_child] + ([self.exit_fd] if self.exit_fd is not None else [])
        while left:
            ready, _, _ = select.select(watch, [], [])
            if self.from_child not in ready:  # it exited: take what it left in the pipe, then stop
                os.set_blocking(self.from_child, False)
                watch = [self.from_child]
            try:
                chunk = os.read(self.from_child, min(left, 1 << 20))
            except BlockingIOError:
                chunk = b""
            if not chunk:
                raise ChildGone()
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def request(self, doc: dict, values: Sequence[Any] = (), method: tuple | None = None) -> Any:
        """Send one request (its arguments ``values``), apply the arrays the child changed, and
        return the reply's value; the child's errors are raised as the exceptions above."""
        blobs: list[bytes] = []
        doc = {**doc, "drop": self.collect(), "push": self.pushes(blobs)}
        if values or doc.get("op") in ("new", "call"):
            doc["args"] = [self.encode(v, blobs, 0) for v in values]
        try:
            write_frame(self.to_child, doc, blobs)
        except (BrokenPipeError, ConnectionResetError):
            raise ChildGone() from None
        try:
            reply, blobs = read_frame(self.from_child, self.read)
            self.pulls(reply.get("pull"), blobs)
            if "error" in reply:
                self.raise_error(reply["error"], doc)
            if "info" in reply:
                return reply["info"]
            return self.decode(reply.get("value"), blobs, 0, method)
        except ProtocolError as exc:
            raise Invalid(f"the submission's process sent {exc}") from None
        except (KeyError, IndexError, TypeError, ValueError, RecursionError) as exc:
            raise Invalid(f"the submission's process sent a malformed reply ({type(exc).__name__})") from None

    def raise_error(self, error: Any, doc: dict) -> None:
        if not isinstance(error, dict):
            raise Invalid("the submission's process sent a malformed error")
        kind, message = error.get("kind"), one_line(error.get("message"))
        name = error.get("type") if isinstance(error.get("type"), str) and _NAME.match(error["type"]) else "Exception"
        where = _where(error.get("where"), self.filename)
        phase = {"load": "importing it", "new": "the constructor"}.get(doc["op"], doc.get("name", "?"))
        if kind == "memory":
            raise OutOfMemory(phase, name, where)
        if kind == "exit" and doc["op"] == "load":
            raise LoadFailed("exception", f"cannot import: SystemExit: {message}{where}")
        if kind == "exit":
            raise Stopped(f"the submission called sys.exit({message}) (SystemExit)", where)
        if kind == "stop":
            raise Stopped(f"{name}: {message}" if message else name, where)
        if kind == "invalid":
            raise Invalid(message)
        if kind == "attribute" and doc["op"] == "get":
            raise AttributeError(message)
        if kind in ("no-class", "no-function"):
            raise LoadFailed(kind, message)
        if doc["op"] == "load":
            raise LoadFailed("exception", f"cannot import: {name}: {message}{where}")
        raise self.error_class(name)(message)

    def error_class(self, name: str) -> type:
        """An exception class of that name (the child's exception, carried by name and message)."""
        if name not in self.errors:
            self.errors[name] = type(name, (Exception,), {"__module__": "submission"})
        return self.errors[name]

    # -- arrays in step --------------------------------------------------------------------------
    def register(self, h: int, array: np.ndarray) -> None:
        def gone(ref, h=h):
            entry = self.mirrors.get(h)
            if entry is not None and entry[0] is ref:
                self.dead.append(h)

        self.mirrors[h] = [weakref.ref(array, gone), array.tobytes()]
        self.ids[id(array)] = h
        if sum(len(e[1]) for e in self.mirrors.values()) > MIRROR_BYTES:
            raise Invalid(f"the submission's arrays exceed {MIRROR_BYTES >> 20} MiB")

    def mirror(self, h: int) -> np.ndarray | None:
        entry = self.mirrors.get(h)
        return entry[0]() if entry is not None else None

    def collect(self) -> list[int]:
        dropped, self.dead = self.dead, []
        for h in dropped:
            entry = self.mirrors.get(h)
            if entry is not None and entry[0]() is None:
                del self.mirrors[h]
        self.ids = {k: h for k, h in self.ids.items() if h in self.mirrors}
        return dropped

    def pushes(self, blobs: list[bytes]) -> list:
        out = []
        for h, entry in self.mirrors.items():
            array = entry[0]()
            if array is not None and array.tobytes() != entry[1]:
                entry[1] = array.tobytes()
                blobs.append(array_bytes(array))
                out.append([h, len(blobs) - 1])
        return out

    def pulls(self, pulls: Any, blobs: list[bytes]) -> None:
        for h, k in pulls or []:
            array = self.mirror(h)
            if array is not None:
                self.update(array, load_array(blobs[k]), h)

    def update(self, array: np.ndarray, data: np.ndarray, h: int) -> None:
        if array.shape != data.shape or array.dtype != data.dtype:
            raise Invalid("the submission changed the shape or dtype of an array in place")
        array[...] = data
        self.mirrors[h][1] = array.tobytes()

    # -- values ----------------------------------------------------------------------------------
    def encode(self, value: Any, blobs: list[bytes], depth: int) -> list:
        """An argument, in the wire format (the grader's own values: no checks needed)."""
        if isinstance(value, np.ndarray):
            h = self.ids.get(id(value))
            if h is not None and self.mirror(h) is value:
                return ["r", h]
            h, self.next = self.next, self.next - 1
            self.register(h, value)
            blobs.append(array_bytes(value))
            return ["a", len(blobs) - 1, h, None]
        if value is None:
            return ["n"]
        if isinstance(value, (bool, np.bool_)):
            return ["b", bool(value)]
        if isinstance(value, np.generic):
            blobs.append(array_bytes(np.asarray(value)))
            return ["s", len(blobs) - 1]
        if isinstance(value, int):
            return ["i", int(value)]
        if isinstance(value, float):
            return ["f", float(value)]
        if isinstance(value, (list, tuple)):
            return ["l" if isinstance(value, list) else "t", [self.encode(v, blobs, depth + 1) for v in value]]
        if isinstance(value, dict):
            return ["d", [[k, self.encode(v, blobs, depth + 1)] for k, v in value.items()]]
        raise TypeError(f"cannot send a {type(value).__name__} to the submission")

    def decode(self, value: Any, blobs: list[bytes], depth: int, method: tuple | None) -> Any:
        """A value from the child: plain numbers, arrays, tuples/lists/dicts of them, None."""
        if depth > MAX_DEPTH:
            raise Invalid(f"the submission sent values nested more than {MAX_DEPTH} deep")
        if not isinstance(value, list) or not value or not isinstance(value[0], str):
            raise Invalid("the submission's process sent a malformed value")
        tag, rest = value[0], value[1:]
        if tag == "n":
            return None
        if tag == "b" and type(rest[0]) is bool:
            return rest[0]
        if tag == "i" and type(rest[0]) is int:
            return rest[0]
        if tag == "f" and type(rest[0]) in (float, int):
            return float(rest[0])
        if tag == "s":
            return load_array(blobs[rest[0]])[()]
        if tag == "a":
            return self.decode_array(rest, blobs)
        if tag in ("l", "t") and isinstance(rest[0], list):
            items = [self.decode(v, blobs, depth + 1, None) for v in rest[0]]
            return items if tag == "l" else tuple(items)
        if tag == "d" and isinstance(rest[0], list):
            out = {}
            for k, v in rest[0]:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise Invalid("the submission sent a dict key that is not a str or int")
                out[k] = self.decode(v, blobs, depth + 1, None)
            return out
        if tag == "m" and method is not None:
            return RemoteMethod(self, *method)
        if tag == "o" and type(rest[0]) is int and method is None:
            return rest[0]
        raise Invalid(f"the submission's process sent a value tagged {one_line(tag)[:20]!r}")

    def decode_array(self, rest: list, blobs: list[bytes]) -> np.ndarray:
        k, h, view = rest
        if type(h) is not int:
            raise Invalid("the submission's process sent an array without a handle")
        data = load_array(blobs[k])
        owner = self.mirror(h)
        if owner is not None and owner.shape == data.shape and owner.dtype == data.dtype:
            if owner.tobytes() != data.tobytes():
                self.update(owner, data, h)
        else:
            owner = data
            self.register(h, owner)
        return owner if view is None else self.view(owner, view)

    @staticmethod
    def view(owner: np.ndarray, view: Any) -> np.ndarray:
        try:
            offset, shape, strides, dtype = view
            dtype = np.dtype(str(dtype)[:20])
            if not allowed_dtype(dtype) or len(shape) > MAX_NDIM or len(shape) != len(strides) \
                    or not all(type(n) is int for n in (offset, *shape, *strides)):
                raise ValueError(dtype)
            if not (owner.flags.c_contiguous or owner.flags.f_contiguous):
                raise ValueError("owner")
            return np.ndarray(tuple(shape), dtype, buffer=raw_bytes(owner), offset=offset, strides=tuple(strides))
        except (TypeError, ValueError):
            raise Invalid("the submission's process sent a view that does not fit its array") from None

    # -- the layer protocol ----------------------------------------------------------------------
    def load(self, path: str, name: str) -> dict:
        """Import the submission in the child; its class's signatures (see :func:`~.child.signature`)."""
        info = self.request({"op": "load", "path": path, "name": name})
        if not isinstance(info, dict) or not isinstance(info.get("classes"), list):
            raise Invalid("the submission's process sent a malformed description of the class")
        return info

    def new(self, args: Sequence[Any]) -> int:
        return self.request({"op": "new"}, args)

    def get(self, handle: int, name: str) -> Any:
        return self.request({"op": "get", "obj": handle, "name": name}, (), (handle, name))

    def call(self, handle: int, name: str, args: Sequence[Any]) -> Any:
        return self.request({"op": "call", "obj": handle, "name": name}, args)

    def current(self, obj: Any) -> Any:
        """``obj`` (returned by a method earlier) with the contents it has now in the child."""
        self.request({"op": "read"})
        return obj

    def layer_class(self, name: str, info: dict) -> type:
        """A :class:`RemoteLayer` class named ``name`` whose classes (``__mro__``) and signatures
        are the submission's, as the checker inspects them."""
        bases: tuple = (RemoteLayer,)
        for klass, backward in reversed(info["classes"][:20]):
            namespace = {} if backward == "absent" else {"backward": _remote_method("backward", backward)}
            bases = (type(klass if isinstance(klass, str) and _NAME.match(klass) else "Base", bases, namespace),)
        cls = type(name, bases, {"_session": self, "__signature__": _signature(info.get("signature"), 0),
                                 "__module__": "submission", "__qualname__": name})
        return cls

    def pair_class(self, functions: tuple[str, str], info: dict, spec: Any) -> type:
        """The layer class of two functions in the submission's process (the course style:
        :func:`~symbackprop.checker.pairs.function_pair`), each called there by name."""
        handle = info.get("module")
        if type(handle) is not int:
            raise Invalid("the submission's process sent a malformed description of the functions")
        calls = [RemoteMethod(self, handle, f) for f in functions]
        for call, sig in zip(calls, info.get("functions") or [None, None]):
            call.__signature__, call.__name__ = _signature(sig, 0), call.name
        return function_pair(*calls, spec, name="/".join(functions))

    def close(self) -> None:
        """End the child (and the sandbox with it)."""
        for fd in (self.to_child, self.from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None

    def exitcode(self) -> int | None:
        """The child's exit status once it died (a signal as a negative number)."""
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            return None
        return code


class RemoteLayer:
    """A layer whose object lives in the submission's process (see :meth:`Session.layer_class`)."""

    _session: Session

    def __init__(self, *args: Any):
        object.__setattr__(self, "_handle", self._session.new(args))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") or name in ("_handle", "_session"):
            raise AttributeError(name)
        return self._session.get(self._handle, name)


class RemoteMethod:
    """A method of an object in the submission's process."""

    def __init__(self, session: Session, handle: int, name: str):
        self.session, self.handle, self.name = session, handle, name

    def __call__(self, *args: Any) -> Any:
        return self.session.call(self.handle, self.name, args)


def _remote_method(name: str, signature: Any):
    def method(self, *args):
        return self._session.call(self._handle, name, args)

    method.__name__ = method.__qualname__ = name
    method.__signature__ = _signature(signature, 0)
    return method


def _signature(data: Any, depth: int) -> Any:
    """An :class:`inspect.Signature` from the child's description; an object inspect refuses
    (as it refuses a builtin without one) when there is none or it is malformed."""
    if not isinstance(data, list):
        return _OPAQUE
    try:
        params = []
        for name, kind, default in data:
            if default is None:
                value = inspect.Parameter.empty
            elif default[0] == "v" and type(default[1]) in (bool, int, float):
                value = default[1]
            else:
                value = _OPAQUE
            params.append(inspect.Parameter(str(name), inspect._ParameterKind(int(kind)), default=value))
        return inspect.Signature(params)
    except (TypeError, ValueError, IndexError):
        return _OPAQUE


def _pidfd(pid: int) -> int | None:
    with contextlib.suppress(AttributeError, OSError):
        return os.pidfd_open(pid)
    return None
