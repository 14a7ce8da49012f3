r"""Checking an elementwise layer class, hand-written or generated, against its declaration.

:func:`verify_layer` constructs the class the book's way (``cls()``; array layers get
their declared parameters positionally), runs it on float64 inputs, and compares
it with an independent reference: the declaration's forward :math:`f` and its exact
derivative :math:`\partial f/\partial x_i` (:func:`raw_local`, the declaration's), evaluated with
mpmath at the very same float64 points.  For every element the error of a value
:math:`a` against the reference :math:`b` is

.. math:: e = \frac{|a - b|}{\max(|a|, |b|, \phi\, s\, |\text{dout}|)}

where :math:`s` is the quantity's typical size (its largest magnitude on the bulk of
random inputs) and :math:`\phi = 10^{-6}`: values far below their typical size are
judged absolutely, so a float64 sigmoid that saturates (:math:`1 - y = 0` at
:math:`x = 37`, where the exact gradient is :math:`8.5\times10^{-17}`) is not blamed.

Findings (DESIGN.md's kinds):

``wrong-math``
    an error larger than :data:`WRONG` of the typical size on the bulk of random
    inputs (or a non-finite value there), a backward that is not linear in ``dout``,
    or a gradient at a kink outside the one-sided derivatives.
``precision``
    errors above :data:`~symbackprop.checker.base.RTOL` that are small on the bulk: float32 arithmetic, a fudge
    term such as ``1e-7``, a lower-precision result dtype, overflow in the tails
    (:math:`|x|` up to 1000).
``shape``
    an output or gradient whose shape differs from its input's (even when numpy
    broadcasting would hide it), a wrong number of gradients, None.
``side-effect``
    forward changes its input; backward changes ``dout`` or an input, returns a
    gradient sharing memory with ``dout`` or with another gradient, or changes the
    layer's state (a second backward differs).  One finding per method.
``stale-cache``
    ``forward(x1); forward(x2); backward(d)`` differs from a fresh ``forward(x2);
    backward(d)``, two instances share their cache, or an array returned by one call
    changes when the next runs (a buffer the layer keeps and overwrites).
``kink-only``
    informational: at a non-differentiable point the class uses another one-sided
    derivative (or a value between them) than the declaration's convention.
``exception``
    the constructor, forward or backward raised.

The reference is an object with ``forward(xs)``, ``local(xs)``, ``kink_masks(xs)`` and
``one_sided(xs)`` (:class:`ElementwiseReference`).  Array layers and networks are checked
by :mod:`symbackprop.checker.layer_arrays` (numerical directional derivatives of the
declaration, the batch size varied, parameter gradients ``dW``/``db``, parameters copied
instead of shared, a loss ignoring ``dout``), with the same kinds and the same report.
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import sympy

from ..errors import SymbackpropError
from ..lang.parser import is_identifier
from ..numerics.differences import elementwise_derivative
from ..numerics.domain import domain_of, rotated
from ..numerics.evaluate import mp_call, mp_function
from ..numerics.kinks import book_convention, kink_arguments, linear_root, rounding_scale
from ..reports import Finding
from ..spec.model import Spec
from ..timebound import attempt
from .pairs import function_pair, pair_names
from .base import (
    IGNORES, Checker, Sample, Tally, UserError, all_same, as_array, call, douts, gradients_of, linearity_problems, same,
)

#: Error relative to the typical size beyond which, on the bulk, the math is wrong.
WRONG = 1e-5
#: Array shapes of the random inputs; the first is the bulk used by every check.
SHAPES = ((8, 8), (1,), (7,), (2, 3, 2))
_MP_DPS = 40
_MAX_FLOAT = np.finfo(float).max
#: A kink argument within this many epsilons of its rounding scale is on the kink for float64.
_EPS = np.finfo(float).eps
KINK_ULPS = 16
#: Relative moves to either side of a kink: tiny at an exact kink, beyond float64's rounding
#: at one that only rounding puts the input on.
EXACT_MOVE, ROUNDED_MOVE = 1e-20, 1e-12


# -- loading FILE.py:CLASS -----------------------------------------------------------------
def load_class(target: str, spec: Spec | None = None) -> Callable[[], Any]:
    """Import ``CLASS`` from ``FILE.py`` (the user's own, trusted code) and return it; for
    ``FILE.py:FORWARD,BACKWARD``, two functions in the course style, a layer class made of
    them for ``spec`` (:func:`~symbackprop.checker.pairs.function_pair`).

    The file's folder is on ``sys.path`` while it is imported, so that it can import
    its neighbours (the book's ``common/``).

    Raises
    ------
    SymbackpropError
        One line: a malformed target, a missing file or class, or an import that failed.
    """
    path_text, sep, name = str(target).rpartition(":")
    if not sep or not path_text or not name:
        raise SymbackpropError(f"{target}: expected FILE.py:CLASS (or FILE.py:FORWARD,BACKWARD)")
    functions = pair_names(name)
    if functions is not None and spec is None:
        raise SymbackpropError(f"{target}: a pair of functions needs the declaration it implements")
    if functions is None and not is_identifier(name):
        raise SymbackpropError(f"{target}: {name!r} is not a class name")
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise SymbackpropError(f"{path_text}: no such Python file")
    module_name = f"_symbackprop_user_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        with contextlib.redirect_stdout(sys.stderr):
            module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise SymbackpropError(f"{path_text}: cannot import: {type(exc).__name__}: {exc}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    if functions is not None:
        found = [getattr(module, f, None) for f in functions]
        missing = [f for f, fn in zip(functions, found) if not callable(fn)]
        if missing:
            raise SymbackpropError(f"{path_text}: no function {missing[0]!r}")
        return function_pair(*found, spec, name="/".join(functions))
    cls = getattr(module, name, None)
    if cls is None or not callable(cls):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name)
        raise SymbackpropError(f"{path_text}: no class {name!r} (classes: {', '.join(found) or 'none'})")
    return cls


# -- the reference ---------------------------------------------------------------------------
class ElementwiseReference:
    r"""Exact values of an elementwise declaration at float64 points.

    ``forward(xs)`` is :math:`f(x)`, ``local(xs)[i]`` is :math:`\partial f/\partial x_i`,
    both by mpmath at 40 digits, rounded to float64 (nan where undefined or beyond
    float64's range).  At a kink the declaration's own convention applies (the book's:
    ReLU'(0) = 0); ``one_sided`` gives the range spanned by the derivatives on either side.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        self.names = spec.input_names
        raw = raw_local(spec)
        self.raw = [raw[n] for n in self.names]
        self._forward = mp_function(spec.forward, spec.inputs)
        self._local = [mp_function(r, spec.inputs) for r in self.raw]
        self.kinks = kink_arguments(spec.forward)
        self._kinks = [mp_function(k, spec.inputs) for k in self.kinks]
        self._scales = [mp_function(rounding_scale(k), spec.inputs) for k in self.kinks]

    def forward(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        return _mp_map(self._forward, xs)

    def local(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [_mp_map(fn, xs) for fn in self._local]

    def kink_masks(self, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Elements on a kink of the forward as float64 sees them (exactly, or within the
        rounding of the kink argument: :data:`KINK_ULPS` epsilons of its
        :func:`~symbackprop.numerics.kinks.rounding_scale`), and those exactly on one (at 40 digits)."""
        shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
        on, exact = np.zeros(shape, bool), np.zeros(shape, bool)
        for fn, scale in zip(self._kinks, self._scales):
            u = np.abs(_mp_map(fn, xs))
            exact |= u == 0
            on |= u <= KINK_ULPS * _EPS * _mp_map(scale, xs)
        return on, exact

    def one_sided(self, xs: Sequence[np.ndarray], mask: np.ndarray,
                  exact: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per input, the smallest and largest derivative just beside each masked element:
        every input moved by :data:`EXACT_MOVE` relative at 40 digits, or by
        :data:`ROUNDED_MOVE` where the element is on the kink only by rounding (so that the
        move crosses it; ``exact`` marks the exact ones)."""
        out = []
        for fn in self._local:
            lo, hi = np.full(mask.shape, np.inf), np.full(mask.shape, -np.inf)
            for k in zip(*np.nonzero(mask)):
                base = [mpmath.mpf(float(np.broadcast_to(x, mask.shape)[k])) for x in xs]
                step = EXACT_MOVE if exact[k] else ROUNDED_MOVE
                for j in range(len(xs)):
                    for sign in (-1, 1):
                        moved = list(base)
                        with mpmath.workdps(_MP_DPS):  # at mpmath's default 15 digits the move vanishes for |x| > 1e-5
                            moved[j] = base[j] + sign * mpmath.mpf(step) * max(1, abs(base[j]))
                        v = _mp_value(fn, moved)
                        if np.isfinite(v):
                            lo[k], hi[k] = min(lo[k], v), max(hi[k], v)
            out.append((lo, hi))
        return out


def raw_local(spec: Spec) -> dict[str, sympy.Expr]:
    r""":math:`\partial y/\partial x_i` of the whole forward, taken from the declaration itself
    (never from a derivation or generated code), with the book's convention at kinks."""
    return {s.name: book_convention(sympy.diff(spec.forward, s), set()) for s in spec.inputs}


def _mp_value(fn: Callable, values: Sequence) -> float:
    """``fn(values)`` at 40 digits, rounded to float64; nan where undefined or beyond float64."""
    v = mp_call(fn, values, _MP_DPS)
    if v is None or isinstance(v, bool) or abs(v) > _MAX_FLOAT:
        return float("nan")
    return float(v)


def _mp_map(fn: Callable, xs: Sequence[np.ndarray]) -> np.ndarray:
    shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
    flat = [np.broadcast_to(np.asarray(x, dtype=float), shape).ravel() for x in xs]
    out = np.array([_mp_value(fn, [mpmath.mpf(float(v[k])) for v in flat]) for k in range(int(np.prod(shape)))])
    return out.reshape(shape)


def kink_points(spec: Spec, rng: np.random.Generator, per_kink: int = 2) -> list[np.ndarray]:
    """Input arrays (one per input, 1-D) whose elements lie exactly on the forward's kinks:
    each kink expression solved for one input, the other inputs random."""
    rows: list[list[float]] = []
    for k in kink_arguments(spec.forward):
        s = sorted(k.free_symbols & set(spec.inputs), key=lambda t: t.name)
        if not s:
            continue
        found = linear_root(k)
        for _ in range(per_kink):
            others = {t: float(domain_of(t, spec.domains).draw(rng, 1)[0]) for t in spec.inputs}
            if found is not None:
                symbol, root = found
                roots = [root]
            else:
                symbol = s[0]
                try:
                    roots = attempt(lambda: sympy.solve(k, symbol), [], 0.5)[0]
                except (NotImplementedError, TypeError, ValueError, sympy.PolynomialError):
                    roots = []
            for r in roots[:2]:
                value = r.xreplace({t: sympy.Float(v) for t, v in others.items()})
                if value.is_real and value.is_number and domain_of(symbol, spec.domains).contains(float(value)):
                    rows.append([float(value) if t == symbol else others[t] for t in spec.inputs])
    if not rows:
        return []
    return [np.array(col) for col in zip(*rows)]


def _edges(spec: Spec) -> list[np.ndarray]:
    """Edge values of every input, rotated against each other, of one common length."""
    return rotated([domain_of(s, spec.domains).edges() for s in spec.inputs])


# -- running the layer ---------------------------------------------------------------------
class _Layer:
    """Calls into the class under test: fresh copies in, exceptions and warnings caught."""

    def __init__(self, factory: Callable[[], Any], n_inputs: int):
        self.factory, self.n = factory, n_inputs

    def make(self, shape=None):
        return call("the constructor", self.factory, (), shape)

    def forward(self, layer, xs: Sequence[np.ndarray]):
        return call("forward", layer.forward, tuple(xs), np.shape(xs[0]))

    def backward(self, layer, dout: np.ndarray):
        return call("backward", layer.backward, (dout,), np.shape(dout))

    def run(self, xs: Sequence[np.ndarray], dout: np.ndarray):
        layer = self.make(np.shape(xs[0]))
        y = self.forward(layer, [x.copy() for x in xs])
        return y, self.backward(layer, dout.copy())


class ElementwiseVerifier(Checker):
    def __init__(self, factory: Callable[[], Any], spec: Spec, reference: ElementwiseReference,
                 seed: int, examples: Iterable[Sequence[np.ndarray]],
                 current: Callable[[Any], Any] | None = None):
        super().__init__(current)
        self.spec, self.ref = spec, reference
        self.names = list(spec.input_names)
        self.layer = _Layer(factory, len(self.names))
        self.rng = np.random.default_rng(seed)
        self.examples = [list(map(np.asarray, e if isinstance(e, (tuple, list)) else (e,))) for e in examples]
        self.tallies = {t: Tally() for t in ["forward", *self.names]}

    # -- the checks ---------------------------------------------------------------------
    def run(self) -> list[Finding]:
        if not self.guarded(lambda: self.layer.make()):
            return self.sorted_findings()
        samples = self.samples()
        self.set_scales(samples[0].xs)
        for sample in samples:
            self.guarded(lambda: self.values(sample))
        self.classify()
        bulk = samples[0].xs
        for check in (self.side_effects, self.stale_cache, self.linearity):
            self.guarded(lambda: check(bulk))
        return self.sorted_findings()

    def samples(self) -> list[Sample]:
        out = []
        for i, shape in enumerate(SHAPES):
            xs = [domain_of(s, self.spec.domains).draw(self.rng, shape) for s in self.spec.inputs]
            out.append(Sample(f"random inputs of shape {shape}", True, xs=xs))
        out.append(Sample("edge values (|x| up to 1000)", False, xs=_edges(self.spec)))
        at_kinks = kink_points(self.spec, self.rng)
        if at_kinks:
            out.append(Sample("kinks", False, xs=at_kinks))
        out += [Sample("a given example", True, xs=xs) for xs in self.examples]
        return out

    def set_scales(self, xs: list[np.ndarray]) -> None:
        values = [self.ref.forward(xs), *self.ref.local(xs)]
        for name, v in zip(self.tallies, values):
            finite = np.abs(v[np.isfinite(v)])
            self.tallies[name].scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0

    def values(self, sample: Sample) -> None:
        xs = sample.xs
        shape = np.broadcast_shapes(*(x.shape for x in xs))
        dout = douts(self.rng, shape)
        y, back = self.layer.run(xs, dout)
        self.compare("forward", y, self.ref.forward(xs), np.ones(shape), xs, dout, sample)
        grads = gradients_of(back, len(self.names))
        if grads is None:
            count = len(back) if isinstance(back, (tuple, list)) else 1
            self.add("shape", None, f"backward returned {count} gradient(s); the declaration has "
                     f"{len(self.names)} input(s) ({', '.join(self.names)}), so it should return "
                     + ("one array" if len(self.names) == 1 else f"a tuple of {len(self.names)}"))
            return
        locals_ = self.ref.local(xs)
        at_kink, exact = self.ref.kink_masks(xs)
        sides = self.ref.one_sided(xs, at_kink, exact) if at_kink.any() else None
        for i, name in enumerate(self.names):
            want = dout * locals_[i]
            got = self.compare(name, grads[i], np.where(at_kink, np.nan, want), dout, xs, dout, sample)
            if got is not None and sides is not None:
                self.kinks(name, got, locals_[i], sides[i], at_kink, exact, xs, dout)

    def compare(self, name: str, got_raw: Any, want: np.ndarray, scale_by: np.ndarray,
                xs: list[np.ndarray], dout: np.ndarray, sample: Sample) -> np.ndarray | None:
        """Shape, dtype and value of one returned array against the reference."""
        label = "the output" if name == "forward" else f"d{name}"
        what = "forward" if name == "forward" else "backward"
        got = as_array(got_raw)
        if got is None:
            self.add("shape", None if name == "forward" else name,
                     f"{what} returned {type(got_raw).__name__} for {label}, not an array of numbers")
            return None
        if got.shape != want.shape:
            hidden = " (numpy broadcasting would hide this)" if _broadcastable(got.shape, want.shape) else ""
            self.add("shape", None if name == "forward" else name,
                     f"{label} has shape {got.shape} for inputs of shape {want.shape}{hidden}", topic="shape")
            if got.size != want.size:
                return None
            got = got.reshape(want.shape)
        tally = self.tallies[name]
        if got.dtype.kind == "f" and got.dtype.itemsize < 8:
            tally.low_dtype = str(got.dtype)
        got = got.astype(float)
        tally.record(got, want, 0.0, tally.scale * np.abs(scale_by), sample.bulk,
                     lambda k, _: self.where(xs, dout, k, got, want, sample, name))
        return got

    def where(self, xs, dout, k: tuple, got, want, sample: Sample, name: str) -> dict:
        shape = np.shape(got)
        inputs = {n: float(np.broadcast_to(x, shape)[k]) for n, x in zip(self.names, xs)}
        record = {"inputs": inputs, "got": float(got[k]), "expected": float(want[k]),
                  "index": [int(i) for i in k], "shape": list(shape), "sample": sample.label}
        if name != "forward":
            record["dout"] = float(dout[k])
        return record

    def kinks(self, name: str, got: np.ndarray, exact: np.ndarray, side: tuple, mask: np.ndarray,
              on_kink: np.ndarray, xs: list[np.ndarray], dout: np.ndarray) -> None:
        """At a kink, a gradient between the one-sided derivatives is a convention; where
        only float64's rounding of the input puts the element on the kink (not ``on_kink``
        exactly), either side is right and nothing is said about conventions."""
        tally = self.tallies[name]
        lo, hi = side
        for k in zip(*np.nonzero(mask)):
            slope = got[k] / dout[k]
            tol = 1e-7 * max(1.0, abs(lo[k]), abs(hi[k]))
            record = {"inputs": {n: float(np.broadcast_to(x, mask.shape)[k]) for n, x in zip(self.names, xs)},
                      "dout": float(dout[k]), "got": float(got[k]), "expected": float(exact[k] * dout[k]),
                      "one_sided": [float(lo[k]), float(hi[k])]}
            if np.isfinite(exact[k]) and abs(slope - exact[k]) <= tol:
                continue
            if np.isfinite(slope) and lo[k] - tol <= slope <= hi[k] + tol:
                if not on_kink[k]:
                    continue
                tally.kink_other = tally.kink_other or {**record, "slope": float(slope), "convention": float(exact[k])}
            else:
                tally.kink_outside = tally.kink_outside or {**record, "slope": float(slope)}

    def classify(self) -> None:
        for name, t in self.tallies.items():
            target = None if name == "forward" else name
            what = "forward" if name == "forward" else f"d{name}"
            self.judge(t, target, what, WRONG, _place, lambda: self.own_forward_hint(name))
            if t.kink_outside:
                k = t.kink_outside
                self.add("wrong-math", target, f"at the kink {_inputs(k)}, {what}/dout is {k['slope']:.6g}, outside "
                         f"the one-sided derivatives [{k['one_sided'][0]:.6g}, {k['one_sided'][1]:.6g}]", None, k,
                         topic="kink")
            elif t.kink_other:
                k = t.kink_other
                self.add("kink-only", target, f"at the kink {_inputs(k)} (not differentiable), {what} = "
                         f"{k['slope']:.6g}*dout (one-sided derivatives {k['one_sided'][0]:.6g} and "
                         f"{k['one_sided'][1]:.6g}); the declaration takes {k['convention']:.6g} (the book's "
                         "convention). Both are valid; informational.", None, k)

    def own_forward_hint(self, name: str) -> str:
        """When the forward itself is wrong, say whether backward matches *its* derivative."""
        if name != "forward" or len(self.names) != 1:
            return ""
        xs = [domain_of(self.spec.inputs[0], self.spec.domains).draw(self.rng, (16,))]
        try:
            layer = self.layer.make()
            self.layer.forward(layer, [xs[0].copy()])
            back = as_array(self.layer.backward(layer, np.ones(16)))
        except UserError:
            return ""
        slope, noise = elementwise_derivative(lambda x: np.asarray(self.layer.forward(self.layer.make(), [x])), xs, 0)
        if back is not None and back.shape == slope.shape and np.all(np.abs(back - slope) <= 1e-5 * (np.abs(slope) + 1) + noise):
            return " (backward is consistent with this forward: the forward itself is not the declared function)"
        return ""

    def side_effects(self, xs: list[np.ndarray]) -> None:
        passed, dout = [x.copy() for x in xs], douts(self.rng, xs[0].shape)
        layer = self.layer.make()
        self.layer.forward(layer, passed)
        changed = [n for n, a, b in zip(self.names, passed, xs) if not same(self.current(a), b)]
        if changed:
            self.add("side-effect", None, f"forward writes into its input {', '.join(changed)}")
        given = dout.copy()
        after_forward = [np.array(self.current(x)) for x in passed]
        grads = gradients_of(self.layer.backward(layer, given), len(self.names)) or []
        problems, example = self.memory_problems(dict(zip(self.names, grads)), given, dout)
        changed = [n for n, a, b in zip(self.names, passed, after_forward) if not same(self.current(a), b)]
        if changed:
            problems.append(f"backward writes into the input {', '.join(changed)}")
        kept = [as_array(self.current(g)) for g in grads]
        kept = [None if g is None else g.copy() for g in kept]
        again = gradients_of(self.layer.backward(layer, dout.copy()), len(self.names))
        if again is not None and grads and not all_same(again, kept) and not problems:
            problems.append("a second backward with the same dout gives another result (backward changes the "
                            "layer's state)")
        if problems:
            self.add("side-effect", None, "; ".join(problems), counterexample=example)

    def stale_cache(self, xs: list[np.ndarray]) -> None:
        other = [domain_of(s, self.spec.domains).draw(self.rng, xs[0].shape) for s in self.spec.inputs]
        dout = douts(self.rng, xs[0].shape)
        fresh_other = self.fresh(other, dout)
        layer = self.layer.make()
        out = {"the output": self.layer.forward(layer, [x.copy() for x in xs])}
        kept = self.snapshot(out)
        self.layer.forward(layer, [x.copy() for x in other])
        self.overwritten(out, kept, "forward(x1)", "forward(x2)")
        reused = gradients_of(self.layer.backward(layer, dout.copy()), len(self.names))
        if not all_same(reused, fresh_other):
            hint = " it used the first forward's values" if all_same(reused, self.fresh(xs, dout)) else ""
            self.add("stale-cache", None, "forward(x1); forward(x2); backward(dout) differs from a fresh "
                     f"forward(x2); backward(dout):{hint or ' the cache is not refreshed by every forward'}")
        if reused is not None:
            grads = {f"d{n}": g for n, g in zip(self.names, reused)}
            kept = self.snapshot(grads)
            self.layer.backward(layer, douts(self.rng, xs[0].shape))
            self.overwritten(grads, kept, "backward(dout1)", "backward(dout2)")
        a, b = self.layer.make(), self.layer.make()
        self.layer.forward(a, [x.copy() for x in xs])
        self.layer.forward(b, [x.copy() for x in other])
        from_a = gradients_of(self.layer.backward(a, dout.copy()), len(self.names))
        if not all_same(from_a, self.fresh(xs, dout)):
            self.add("stale-cache", None, "two instances share their cache: a forward on one changes the "
                     "other's backward (state kept on the class, not on self?)")

    def fresh(self, xs: list[np.ndarray], dout: np.ndarray) -> list | None:
        return gradients_of(self.layer.run(xs, dout)[1], len(self.names))

    def linearity(self, xs: list[np.ndarray]) -> None:
        """backward(0) = 0, backward(2 d) = 2 backward(d), backward(d + e) = backward(d) + backward(e)."""
        d, e = douts(self.rng, xs[0].shape), douts(self.rng, xs[0].shape)
        run = {key: self.fresh(xs, value) for key, value in
               (("d", d), ("e", e), ("2d", 2 * d), ("d+e", d + e), ("0", 0 * d))}
        if any(v is None for v in run.values()):
            return
        for i, name in enumerate(self.names):
            g = {k: as_array(v[i]) for k, v in run.items()}
            if any(v is None or v.shape != g["d"].shape for v in g.values()):
                continue
            problems = linearity_problems({k: v.astype(float) for k, v in g.items()})
            if problems:
                self.add("wrong-math", name, "backward is not linear in dout: "
                         + "; ".join(IGNORES if q == "ignores" else q for q in problems), topic="linearity")


def _broadcastable(a: tuple, b: tuple) -> bool:
    try:
        return np.broadcast_shapes(a, b) == b
    except ValueError:
        return False


def _inputs(record: dict) -> str:
    return ", ".join(f"{k} = {v:.6g}" for k, v in record["inputs"].items())


def _place(at: dict) -> str:
    d = f", dout = {at['dout']:.6g}" if "dout" in at else ""
    return f"at {_inputs(at)}{d} ({at['sample']})"

