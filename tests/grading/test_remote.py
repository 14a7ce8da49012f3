"""The wire between the grader and a submission's process, the sandbox's mount plan, and a
batch without a sandbox.

Oracles: numpy's own view of memory (``np.shares_memory``), the in-process verdicts of the same
classes (:func:`~symbackprop.checker.verify_layer` on the class itself), and hand-made frames
that break the format.
"""
import io
import json
import os
import pickle
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest

from symbackprop.checker import load_class, verify_layer
from symbackprop.cli import main
from symbackprop.grading import child, sandbox
from symbackprop.grading.remote import Invalid


def frame(doc: dict, blobs=()) -> bytes:
    r, w = os.pipe()
    child.write_frame(w, doc, list(blobs))
    os.close(w)
    data = os.read(r, 1 << 20)
    os.close(r)
    return data


def read(data: bytes):
    f = io.BytesIO(data)
    return child.read_frame(-1, lambda n: f.read(n) if len(f.getbuffer()) - f.tell() >= n else (_ for _ in ()).throw(EOFError()))


def test_arrays_round_trip_with_their_dtype_shape_and_order():
    for a in (np.arange(12.0).reshape(3, 4), np.asfortranarray(np.ones((2, 3), np.float32)), np.array(True),
              np.arange(5, dtype=np.int16)):
        b = child.load_array(child.array_bytes(a))
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b) and b.flags.writeable
        assert b.flags.f_contiguous == a.flags.f_contiguous


def object_npy() -> bytes:
    """An .npy header for an object array (np.save will not write one without pickle)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    return out.getvalue() + b"\0" * 8


@pytest.mark.parametrize("blob, message", [
    (object_npy(), "dtype object"),
    (pickle.dumps(np.arange(3)), "not an .npy"),
    (child.array_bytes(np.zeros(4))[:-8], "does not fit"),
    (child.array_bytes(np.zeros(1, dtype=[("a", "f8")])), "dtype"),
    (child.array_bytes(np.zeros((1,) * 9)), "9 dimensions"),
])
def test_anything_but_a_plain_numeric_npy_is_refused(blob, message):
    with pytest.raises(child.ProtocolError, match=message):
        child.load_array(blob)


def raw_frame(doc: bytes, tail: bytes = b"") -> bytes:
    payload = struct.pack(">I", len(doc)) + doc + tail
    return struct.pack(">Q", len(payload)) + payload


def test_frames_over_the_limit_or_malformed_are_refused():
    with pytest.raises(child.ProtocolError, match="at most"):
        read(struct.pack(">Q", child.FRAME_BYTES + 1))
    with pytest.raises(child.ProtocolError, match="JSON"):
        read(raw_frame(b"not json"))
    with pytest.raises(child.ProtocolError, match="add up"):
        read(raw_frame(b'{"blobs": [5]}', b"xy"))
    with pytest.raises(child.ProtocolError, match="blob lengths"):
        read(raw_frame(b'{"blobs": "x"}'))
    doc, blobs = read(frame({"a": 1}, [b"xy"]))
    assert doc["a"] == 1 and blobs == [b"xy"]


def plant(tmp_path: Path, source: str, name: str = "layers.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


ALIASING = """
    import numpy as np

    class Sigmoid:
        def forward(self, x):
            self.out = 1 / (1 + np.exp(-x))
            x *= 0  # writes into its input
            return self.out

        def backward(self, dout):
            dout *= (1.0 - self.out) * self.out  # in place: returns dout itself
            return dout
    """


@pytest.mark.parametrize("isolation", [pytest.param("bwrap", marks=pytest.mark.needs("bwrap")), "none"])
def test_a_remote_layer_gets_the_in_process_verdict_writes_and_aliases_included(tmp_path, isolation):
    path = plant(tmp_path, ALIASING)
    here = verify_layer(load_class(f"{path}:Sigmoid"), "sigmoid")
    session = sandbox.start(path, isolation, memory=1 << 30, timeout=10)
    try:
        cls = session.layer_class("Sigmoid", session.load(session.path, "Sigmoid"))
        there = verify_layer(cls, "sigmoid", current=session.current)
        layer = cls()
        dout = np.ones(3)
        back = layer.backward(dout) if layer.forward(np.zeros(3)) is not None else None
        assert back is dout  # the very array the grader passed, changed in place
    finally:
        sandbox.finish(session)
    assert [f.kind for f in there.findings] == [f.kind for f in here.findings] and "side-effect" in \
        [f.kind for f in here.findings]
    assert [f.message for f in there.findings] == [f.message for f in here.findings]


@pytest.mark.needs("bwrap")
def test_a_view_of_what_was_passed_comes_back_as_a_view(tmp_path):
    path = plant(tmp_path, """
        class Views:
            def half(self, a):
                return a[1:3], a.reshape(2, 2)
        """)
    session = sandbox.start(path, "bwrap", memory=1 << 30, timeout=10)
    try:
        cls = session.layer_class("Views", session.load(session.path, "Views"))
        a = np.arange(4.0)
        part, square = cls().half(a)
        assert np.shares_memory(part, a) and np.shares_memory(square, a)
        assert part.tolist() == [1.0, 2.0] and square.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    finally:
        sandbox.finish(session)


@pytest.mark.needs("bwrap")
def test_a_string_result_is_invalid_not_compared(tmp_path):
    path = plant(tmp_path, """
        class Talker:
            def forward(self, x):
                return "ok"
        """)
    session = sandbox.start(path, "bwrap", memory=1 << 30, timeout=10)
    try:
        cls = session.layer_class("Talker", session.load(session.path, "Talker"))
        with pytest.raises(Invalid, match="gave a str"):
            cls().forward(np.zeros(2))
    finally:
        sandbox.finish(session)


def test_the_mount_plan_hides_submissions_the_package_and_the_cache(tmp_path):
    hidden = sandbox.hidden_paths([str(tmp_path / "a"), str(tmp_path)])
    for path in (tmp_path / "a", tmp_path, Path.home(), Path("/tmp")):
        assert any(sandbox._under(path.resolve(), h) for h in hidden), path
    package = Path(sandbox.__file__).resolve().parents[1]
    assert package in sandbox.package_paths()
    plan = sandbox._mounts([str(tmp_path)], [5, 6], "layers.py")
    tmpfs = {plan[i + 1] for i, word in enumerate(plan) if word == "--tmpfs"}
    assert "/tmp" in tmpfs
    assert any(sandbox._under(package, Path(t)) for t in tmpfs)  # itself, or a folder above it (a checkout in /tmp)
    assert plan.index("--remount-ro") > plan.index(sandbox.SCRATCH)


def test_without_a_sandbox_the_verdict_is_still_computed_outside(tmp_path, capsys):
    fake = ("import os, json\nfor fd in range(64):\n    try:\n        os.write(fd, json.dumps({'ok': True}).encode())\n"
            "    except OSError:\n        pass\n")
    for name, body in (("a", fake), ("b", "")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "layers.py").write_text(
            "import numpy as np\nclass Sigmoid:\n    def forward(self, x):\n        self.out = 1/(1+np.exp(-x))\n"
            "        return self.out\n    def backward(self, dout):\n        return dout * self.out\n" + body)
    assert main(["verify-layer", f"{tmp_path}/*/layers.py:Sigmoid", "--against", "sigmoid", "--isolation", "none",
                 "--json"]) == 1
    records = json.loads(capsys.readouterr().out)["results"]
    assert [(r["ok"], r["isolation"]) for r in records] == [(False, "none"), (False, "none")]
    assert all(r["findings"][0]["kind"] in ("wrong-math", "invalid") for r in records)
