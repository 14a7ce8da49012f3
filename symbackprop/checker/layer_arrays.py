r"""Checking a hand-written array layer, or a network, against its declaration.

The class is built the book's way: the declared parameters passed positionally, random
float64 values of the declared shapes (``Affine(W, b)``; hyper-parameters keep their
defaults).  A network (a declaration with ``predict``) may instead take its sizes, as
the book's ``TwoLayerNet(input_size, hidden_size, output_size)``; its ``params`` are then
set in place, as the book's optimizer changes them.  Networks are checked through the
book's interface: ``loss(x, t)``, ``predict(x)`` and ``gradient(x, t)``.

The reference is the declaration at concrete sizes
(:meth:`~symbackprop.checker.arrays.ArrayProblem.declared`): the declared forward in float64,
array atoms by their definitions, never generated code; its derivatives are numerical.  With an upstream gradient :math:`\bar y` and a direction :math:`v`,

.. math:: D_v = \frac{d}{dh} \langle \bar y, f(s + h v) \rangle \Big|_{h=0}

by complex step (no cancellation, float64-exact) where the forward is analytic, else by
central differences with their rounding noise estimated.  A few random directions
*decide*: the gradient :math:`g` returned or stored by the class passes when
:math:`\langle g, v\rangle = D_v` within :data:`~symbackprop.checker.base.RTOL`.  Only when
one disagrees is every element compared with :math:`D_{e_k}` to *locate* the error and
measure it (every element of the ordinary samples is differentiated anyway: their typical
sizes set the floors), as for elementwise layers: the relative error with a floor of
:math:`10^{-6}` of the quantity's typical size, and the error relative to that size.

Samples: a batch of 4 with distinct sizes for the other dimensions (a transposed
gradient changes shape), a batch of one, a batch of 2 with square matrices (a transpose
keeps its shape but not its values), large values (:math:`|x|` up to 1000: softmax
saturates, a naive ``exp`` overflows), and the caller's examples.  Varying the batch size
shows a missing ``1/N``, which a batch of one hides.

Findings use the kinds of :mod:`symbackprop.checker.layer`.  ``wrong-math`` when the error
exceeds :data:`WRONG` of the typical size on ordinary values (or a backward is not linear
in ``dout``); ``precision`` when it stays below that but above float64's (float32, the
book's ``log(y + 1e-7)``); ``shape`` for a gradient whose shape is not its value's (``db``
of shape ``(N, M)`` or ``(1, M)`` for ``(M,)``), a missing ``dW``; ``side-effect`` for
writes into ``x``, ``t``, ``dout`` or the parameters, gradients sharing memory, and
parameters *copied* instead of shared (a distinct message: the optimizer's in-place
update would never reach the layer); ``stale-cache`` (also for an output or gradient
overwritten by the next call); ``exception``.  A loss layer whose
``backward(dout=1)`` ignores ``dout`` follows the book's convention for the last layer:
a note, not a finding (without that default it is ``wrong-math``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import sympy

from ..errors import SymbackpropError
from ..reports import Finding
from ..spec.model import Spec
from .arrays import ArrayProblem, choose_method
from .base import (
    FLOOR, IGNORES, RTOL, Checker, directional_error, exceeds, Mismatch, Sample, Tally, UserError, all_same, as_array, call, copy, douts, gradients_of,
    linearity_problems, same,
)

#: Error relative to the typical size beyond which, on ordinary values, the math is wrong.
#: Formula slips are off by 1e-1 or more; the book's ``log(y + 1e-7)`` by about 1e-7.
WRONG = 1e-4
#: Random directions per gradient and sample.
DIRECTIONS = 3
#: Sizes of the dimensions other than the batch, in the order of ``spec.dims``.
OTHER_SIZES = (3, 5, 6, 7, 2, 8)
#: Batch sizes: the main sample, a batch of one, square matrices, a second forward.
MAIN_BATCH, SECOND_BATCH = 4, 3
#: Counterexamples carry the sample's arrays when they have at most this many elements in all.
VALUES_LIMIT = 300
#: Magnitude of the large values.
LARGE = 1000.0
#: How far below its row's maximum a target's score is put (exp underflows below about -745).
FAR_BELOW = 800.0
_MISSING = object()


def verify_array_layer(factory: Callable[..., Any], spec: Spec, *, seed: int = 0, examples: Iterable[Any] = (),
                       current: Callable[[Any], Any] | None = None) -> tuple[list[Finding], list[str]]:
    """Findings and notes for a hand-written array layer or network (see the module docstring).

    Parameters
    ----------
    factory : callable
        The class, or a function taking what the class's constructor takes.
    spec : Spec
        An array declaration (``spec.is_array``).
    seed : int
        Seed of the random values.
    examples : iterable
        Tuples of the arrays ``forward`` takes (inputs, then constants), or dicts by name
        (which may also give parameters).
    current : callable, optional
        Reads an object's current contents (see :func:`symbackprop.checker.verify_layer`).
    """
    checker = (NetworkVerifier if spec.predict is not None else ArrayVerifier)(factory, spec, seed, examples, current)
    return checker.run(), checker.notes


# -- small helpers ---------------------------------------------------------------------------
def _copies(values: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [v.copy() for v in values]


def _batch_dim(spec: Spec) -> sympy.Symbol | None:
    first = spec.shapes[spec.arguments[0]]
    return first[0] if first and isinstance(first[0], sympy.Symbol) else None


def _size_dims(spec: Spec, batch: sympy.Symbol | None) -> list[sympy.Symbol]:
    """The dimensions of the parameters in order of appearance (D, H, K for ``W1``, ``W2``)."""
    out: list[sympy.Symbol] = []
    for p in spec.params:
        out += [d for d in spec.shapes[p] if isinstance(d, sympy.Symbol) and d != batch and d not in out]
    return out


def _arity(factory: Callable[..., Any]) -> int | None:
    """Required positional arguments of the constructor; None if it takes ``*args`` or is opaque."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    count = 0
    for p in signature.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            count += 1
    return count


def _default_is_one(layer: Any) -> bool:
    """Does the layer's ``backward`` declare ``dout=1`` (the book's last layer)?  Pass-through
    wrappers, ``backward(self, *args, **kwargs)`` of a subclass, are looked through."""
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    for klass in type(layer).__mro__:
        method = klass.__dict__.get("backward")
        if method is None:
            continue
        try:
            params = list(inspect.signature(method).parameters.values())[1:]  # after self
        except (TypeError, ValueError):
            return False
        if params and all(p.kind in variadic for p in params):
            continue
        default = params[0].default if params else inspect.Parameter.empty
        return isinstance(default, (int, float)) and not isinstance(default, bool) and default == 1
    return False


def _dims_text(shape: tuple) -> str:
    if not shape:
        return "a scalar"
    names = ", ".join(str(d) for d in shape)
    return f"({names},)" if len(shape) == 1 else f"({names})"


def _index_text(at: dict) -> str:
    return at["quantity"] + (f"[{', '.join(map(str, at['index']))}]" if at["index"] else "")


def _at_text(at: dict) -> str:
    sizes = ", ".join(f"{k} = {v}" for k, v in at["sizes"].items())
    return f"at {_index_text(at)} ({at['sample']}; {sizes})"


# -- array layers -------------------------------------------------------------------------------
class ArrayVerifier(Checker):
    """A layer with ``forward(*inputs, *constants)`` and ``backward(dout)`` that returns the
    inputs' gradients and stores the parameters' as ``self.d<name>``."""

    network = False

    def __init__(self, factory: Callable[..., Any], spec: Spec, seed: int, examples: Iterable[Any],
                 current: Callable[[Any], Any] | None = None):
        super().__init__(current)
        self.factory, self.spec, self.seed = factory, spec, seed
        self.rng = np.random.default_rng(seed)
        self.batch = _batch_dim(spec)
        self.scalar = spec.shapes[spec.output] == ()
        self.args = (*spec.inputs, *spec.constants)
        self.checked = list(spec.differentiated)
        self.tallies = {"forward": Tally(), **{s.name: Tally() for s in self.checked}}
        self.examples = list(examples)
        self.method = "central"
        self.values_unreachable = False

    # -- the checks ---------------------------------------------------------------------
    def run(self) -> list[Finding]:
        samples = self.samples()
        main = samples[0]
        self.method = choose_method(main.problem)
        if not self.guarded(lambda: self.build(main.problem)):
            return self.sorted_findings()
        self.set_scales([s for s in samples if s.bulk and not s.given])
        self.guarded(lambda: self.copied_params(main))
        if not self.values_unreachable:
            for sample in samples:
                self.guarded(lambda sample=sample: self.values(sample))
        self.classify()
        for check in (self.side_effects, self.stale_cache, self.linearity):
            self.guarded(lambda check=check: check(main))
        return self.sorted_findings()

    # -- samples and the reference ----------------------------------------------------------
    def sizes(self, batch: int, others: int | None = None) -> dict[sympy.Symbol, int]:
        out, k = {}, 0
        for d in self.spec.dims:
            if d == self.batch:
                out[d] = batch
            else:
                out[d] = others or OTHER_SIZES[k % len(OTHER_SIZES)]
                k += 1
        return out

    def problem(self, sizes: dict, offset: int) -> ArrayProblem:
        problem = ArrayProblem(self.spec, sizes, self.seed * 1009 + offset)
        if self.scalar:
            problem.dout = 1.0  # a loss: the book calls backward(dout=1); linearity checks vary it
        return problem

    def samples(self) -> list[Sample]:
        out = [Sample("random values", True, problem=self.problem(self.sizes(MAIN_BATCH), 1)),
               Sample("random values, a batch of one", True, problem=self.problem(self.sizes(1), 2)),
               Sample("random values, square matrices", True, problem=self.problem(self.sizes(2, 3), 3))]
        if self.spec.hyper:  # a stride of 2 and a padding of 1 find a stride or a padding ignored
            other = {h: v + 1 for h, v in self.spec.hyper.items()}
            text = ", ".join(f"{h.name} = {v}" for h, v in other.items())
            out.append(Sample(f"random values, {text}", True, problem=self.problem({**self.sizes(MAIN_BATCH), **other}, 7)))
        large = self.problem(self.sizes(MAIN_BATCH), 4)
        for s in self.large_arrays():
            large.values[s] = self.large_values(s, large.values[s].shape, large.rng)
        out.append(Sample(self.large_label(), False, problem=large))
        out += self.targets_far_below()
        out += [Sample("a given example", True, problem=self.example_problem(e, k), given=True)
                for k, e in enumerate(self.examples)]
        return out

    def targets_far_below(self) -> list[Sample]:
        """For a loss with one-hot targets ``t``: every row's target score :data:`FAR_BELOW`
        under the row's maximum, where ``exp(score - max)`` is 0 in float64 (below about
        -745) and a naive ``-log(exp(s_t - max) / sum)`` gives inf; the declared loss is finite."""
        out = []
        for kind, t, axis in self.spec.assumptions:
            scores = [x for x in self.spec.inputs if self.spec.shapes[x] == self.spec.shapes.get(t)
                      and self.spec.domains[x].unbounded]  # scores, not probabilities
            if kind != "onehot" or not scores or len(self.spec.shapes[t]) != 2 or axis != 1:
                continue
            problem = self.problem(self.sizes(MAIN_BATCH), 5)
            x, target = problem.values[scores[0]], problem.values[t].astype(bool)
            x[target] = x.max(axis=1) - FAR_BELOW
            out.append(Sample(f"each row's target score {FAR_BELOW:g} below the row's maximum", False,
                              problem=problem))
        return out

    def large_arrays(self) -> tuple[sympy.Symbol, ...]:
        """The arrays the large-values sample sets: the inputs, or an embedding's table (no inputs)."""
        return self.spec.inputs or self.spec.params

    def large_label(self) -> str:
        first = self.large_arrays()[0]
        domain = self.spec.domains.get(first)
        if domain is not None and domain.bounded:
            return f"values next to the ends of {first.name}'s interval ({domain.lo:g}, {domain.hi:g})"
        return f"large values, |{first.name}| up to {LARGE:g}"

    def large_values(self, symbol: sympy.Symbol, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        """Values where naive code breaks: up to :data:`LARGE` in size; from tiny to large for a
        half-line; next to the ends of a bounded interval (``1 - 1e-8`` for a probability)."""
        domain = self.spec.domains.get(symbol)
        if domain is not None and domain.bounded:
            return rng.choice(np.array(domain.edges()), shape)
        if symbol.is_positive or symbol.is_negative:
            tiny_to_large = np.exp(rng.uniform(-40.0, 7.0, shape))
            return tiny_to_large if symbol.is_positive else -tiny_to_large
        return rng.uniform(-LARGE, LARGE, shape)

    def example_problem(self, example: Any, k: int) -> ArrayProblem:
        """A problem at the sizes an example's arrays imply, holding those arrays."""
        given = self.example_arrays(example)
        fixed: dict[sympy.Symbol, int] = {}
        for symbol, array in given.items():
            declared = self.spec.shapes[symbol]
            if array.ndim != len(declared):
                raise SymbackpropError(f"examples: {symbol.name} has shape {array.shape}; the declaration's is "
                                       f"{_dims_text(declared)}")
            for d, n in zip(declared, array.shape):
                if (d.is_Integer and int(d) != n) or (not d.is_Integer and fixed.setdefault(d, n) != n):
                    raise SymbackpropError(f"examples: {symbol.name} has shape {array.shape}, which does not fit "
                                           f"{_dims_text(declared)} with the other arrays")
        problem = self.problem({**self.sizes(MAIN_BATCH), **fixed}, 100 + k)
        problem.values.update({s: a.copy() for s, a in given.items()})
        return problem

    def example_arrays(self, example: Any) -> dict[sympy.Symbol, np.ndarray]:
        if isinstance(example, Mapping):
            known = {s.name: s for s in (*self.args, *self.spec.params)}
            unknown = sorted(set(example) - set(known))
            if unknown:
                raise SymbackpropError(f"examples: {unknown[0]!r} is not an array of {self.spec.name} "
                                       f"(known: {', '.join(known)})")
            return {known[k]: np.asarray(v, dtype=float) for k, v in example.items()}
        arrays = list(example) if isinstance(example, (tuple, list)) else [example]
        if len(arrays) != len(self.args):
            raise SymbackpropError(f"examples: forward takes {', '.join(s.name for s in self.args)}; "
                                   f"an example gives {len(arrays)} array(s)")
        return {s: np.asarray(a, dtype=float) for s, a in zip(self.args, arrays)}

    def reference(self, sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
        """The declaration's output and, for a network, ``predict``."""
        if sample.ref is None:
            p = sample.problem
            predict = self.spec.predict
            sample.ref = (self.reference_output(p, {}),
                          None if predict is None else np.asarray(p.declared(p.values, predict), dtype=float))
        return sample.ref

    @staticmethod
    def reference_output(problem: ArrayProblem, changed: dict) -> np.ndarray:
        return np.asarray(problem.declared({**problem.values, **changed}), dtype=float)

    def reference_gradient(self, sample: Sample, symbol: sympy.Symbol) -> tuple[np.ndarray, np.ndarray]:
        """The declaration's gradient for ``symbol``, element by element, and its uncertainty."""
        if symbol.name not in sample.grads:
            sample.grads[symbol.name] = sample.problem.gradient(symbol, self.method)
        return sample.grads[symbol.name]

    def set_scales(self, samples: list[Sample]) -> None:
        """Each quantity's typical size: its largest magnitude over the ordinary samples."""
        largest = dict.fromkeys(self.tallies, 0.0)
        for sample in samples:
            out, predict = self.reference(sample)
            grads = {s.name: self.reference_gradient(sample, s)[0] for s in self.checked}
            for name, value in (("forward", out), ("predict", predict), *grads.items()):
                if name in largest and value is not None:
                    finite = np.abs(value[np.isfinite(value)])
                    largest[name] = max(largest[name], float(finite.max(initial=0.0)))
        for name, size in largest.items():
            self.tallies[name].scale = size if size > 0 else 1.0

    # -- calling the layer ---------------------------------------------------------------------
    def shape_of(self, problem: ArrayProblem) -> tuple:
        return np.shape(problem.values[self.spec.arguments[0]])

    def call(self, obj: Any, method: str, args: Sequence[Any], problem: ArrayProblem) -> Any:
        fn = getattr(obj, method, None)
        if not callable(fn):
            raise Mismatch("exception", f"{type(obj).__name__} has no method {method}()"
                            + self.interface_hint())
        return call(method, fn, tuple(args), self.shape_of(problem))

    def interface_hint(self) -> str:
        return " (a layer needs forward and backward, as the book's)"

    def param_arrays(self, problem: ArrayProblem) -> list[np.ndarray]:
        return [problem.values[p].copy() for p in self.spec.params]

    def arg_arrays(self, problem: ArrayProblem) -> list[np.ndarray]:
        return [problem.values[s].copy() for s in self.args]

    def build(self, problem: ArrayProblem, params: list[np.ndarray] | None = None) -> Any:
        """The layer, built the book's way: ``cls(*params)``."""
        params = self.param_arrays(problem) if params is None else params
        # index notation: the hyperparameters follow, in declared order (the book's Convolution(W, b, stride, pad))
        hyper = tuple(problem.hyper().values())
        return call("the constructor", self.factory, (*params, *hyper), self.shape_of(problem))

    def shared(self, layer: Any, params: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The parameter arrays the layer should be computing with."""
        return {p.name: a for p, a in zip(self.spec.params, params)}

    def output(self, layer: Any, problem: ArrayProblem) -> np.ndarray | None:
        return as_array(self.call(layer, "forward", self.arg_arrays(problem), problem))

    def run_backward(self, layer: Any, dout: Any, problem: ArrayProblem) -> dict[str, Any]:
        """Every gradient of one backward: returned for the inputs, stored for the parameters."""
        back = self.call(layer, "backward", (dout,), problem)
        n = len(self.spec.inputs)
        returned = gradients_of(back, n)
        if returned is None:
            count = len(back) if isinstance(back, (tuple, list)) else 1
            raise Mismatch("shape", f"backward returned {count} gradient(s); the declaration has {n} input(s) "
                            f"({', '.join(self.spec.input_names)}), so it should return "
                            + ("one array" if n == 1 else f"a tuple of {n}"))
        grads = {s.name: g for s, g in zip(self.spec.inputs, returned)}
        for p in self.spec.params:
            grads[p.name] = self.stored(layer, p.name)
        return grads

    @staticmethod
    def stored(layer: Any, name: str) -> Any:
        value = getattr(layer, f"d{name}", _MISSING)
        table = getattr(layer, "grads", None)
        if value is _MISSING and isinstance(table, Mapping):
            value = table.get(name, _MISSING)
        return value

    def gradient_arrays(self, layer: Any, dout: Any, problem: ArrayProblem) -> dict[str, np.ndarray]:
        """Copies of the gradients of one backward that are arrays of numbers."""
        grads = self.run_backward(layer, dout, problem)
        return {k: np.array(a) for k, v in grads.items() if v is not _MISSING and (a := as_array(v)) is not None}

    def fresh_gradients(self, problem: ArrayProblem, dout: Any) -> dict[str, np.ndarray]:
        layer = self.build(problem)
        self.call(layer, "forward", self.arg_arrays(problem), problem)
        return self.gradient_arrays(layer, copy(dout), problem)

    # -- values ------------------------------------------------------------------------------
    def values(self, sample: Sample) -> None:
        p = sample.problem
        out_ref, _ = self.reference(sample)
        layer = self.build(p)
        self.compare_values("forward", self.call(layer, "forward", self.arg_arrays(p), p), out_ref, sample)
        grads = self.run_backward(layer, copy(p.dout), p)
        for s in self.checked:
            self.compare_gradient(s, grads[s.name], sample)

    def label(self, name: str) -> str:
        if name == "forward" and self.spec.outputs:  # several: stacked on a first axis (checker/outputs.py)
            return f"the stack ({', '.join(o.name for o in self.spec.outputs)})"
        if name == "forward":
            return "the loss" if self.scalar else "the output"
        return f"d{name}"

    def missing_text(self, name: str) -> str:
        return f"backward stored no gradient for {name} (the book's layers keep it as self.d{name})"

    def declared_shape(self, name: str) -> tuple:
        symbol = {"forward": self.spec.output, "predict": self.spec.predict}.get(name)
        if symbol is None:
            symbol = next(s for s in self.spec.differentiated if s.name == name)
        return self.spec.shapes[symbol]

    def shaped(self, name: str, raw: Any, want: tuple, sample: Sample) -> np.ndarray | None:
        """The value as an array of the declared shape; a ``shape`` finding when it is not.
        Values are still compared across a missing or extra axis of length 1."""
        target = None if name in ("forward", "predict") else name
        if raw is _MISSING:
            self.add("shape", target, self.missing_text(name), topic="missing")
            return None
        got = as_array(raw)
        if got is None:
            self.add("shape", target, f"{self.label(name)} is {type(raw).__name__}, not an array of numbers",
                     topic="type")
            return None
        if got.shape == want:
            return got
        hint = ""
        if got.ndim == 2 and got.shape[::-1] == want:
            hint = ": the transpose of the declared shape"
        else:
            try:
                np.broadcast_shapes(got.shape, want)
                hint = ": numpy broadcasting would hide this"
            except ValueError:
                pass
        sizes = ", ".join(f"{k} = {v}" for k, v in sample.sizes.items())
        declared = _dims_text(self.declared_shape(name))
        self.add("shape", target, f"{self.label(name)} has shape {got.shape}, not {declared}"
                 + (f" = {want}" if want else "") + f" (at {sizes}){hint}", topic="shape")
        if tuple(n for n in got.shape if n != 1) == tuple(n for n in want if n != 1):
            return got.reshape(want)
        return None

    def compare_values(self, name: str, raw: Any, want: np.ndarray, sample: Sample) -> None:
        got = self.shaped(name, raw, want.shape, sample)
        if got is not None:
            self.note_dtype(name, got)
            self.tally(name, got.astype(float), want, 0.0, sample)

    def note_dtype(self, name: str, got: np.ndarray) -> None:
        if got.dtype.kind == "f" and got.dtype.itemsize < 8:
            self.tallies[name].low_dtype = str(got.dtype)

    def compare_gradient(self, symbol: sympy.Symbol, raw: Any, sample: Sample) -> None:
        """Decide by random directions; only if one disagrees, locate element by element."""
        got = self.shaped(symbol.name, raw, sample.problem.values[symbol].shape, sample)
        if got is None:
            return
        self.note_dtype(symbol.name, got)
        got = got.astype(float)
        if np.all(np.isfinite(got)) and self.directions_agree(sample, symbol, got):
            return
        want, noise = self.reference_gradient(sample, symbol)
        self.tally(symbol.name, got, want, noise, sample)

    def directions_agree(self, sample: Sample, symbol: sympy.Symbol, got: np.ndarray) -> bool:
        for _ in range(DIRECTIONS):
            v = self.rng.standard_normal(got.shape)
            want, noise = sample.problem.directional(symbol, v, self.method)
            if not np.isfinite(want):
                continue
            if exceeds(directional_error(float(np.sum(got * v)), want, noise, got, v), RTOL):
                return False
        return True

    def tally(self, name: str, got: np.ndarray, want: np.ndarray, noise: Any, sample: Sample) -> None:
        t = self.tallies[name]
        t.record(got, want, noise, t.scale, sample.bulk, lambda k, e: self.where(name, k, got, want, e, sample))

    def where(self, name: str, k: tuple, got: np.ndarray, want: np.ndarray, error: float, sample: Sample) -> dict:
        record = {"quantity": self.label(name), "input": None if name in ("forward", "predict") else name,
                  "index": [int(i) for i in k], "shape": list(got.shape), "got": float(got[k]),
                  "expected": float(want[k]), "relative_error": error, "sizes": sample.sizes,
                  "sample": sample.label}
        return {**record, **self.values_record(sample)}

    def values_record(self, sample: Sample) -> dict:
        """The sample's arrays and ``dout`` by name, to reproduce it (when they are small)."""
        p = sample.problem
        named = {s.name: p.values[s] for s in (*self.args, *self.spec.params)}
        if sum(v.size for v in named.values()) > VALUES_LIMIT:
            return {}
        dout = p.dout.tolist() if isinstance(p.dout, np.ndarray) else float(p.dout)
        return {"values": {k: v.tolist() for k, v in named.items()}, "dout": dout}

    def classify(self) -> None:
        for name, t in self.tallies.items():
            target = None if name in ("forward", "predict") else name
            what = self.label(name)
            self.judge(t, target, what, WRONG, _at_text)

    # -- side effects, copies, caches, linearity -----------------------------------------------
    def changed(self, phase: str, args: list, kept_args: list, params: dict, kept_params: dict) -> list[str]:
        out = [f"{phase} writes into its input {s.name}" for s, a, b in zip(self.args, args, kept_args)
               if not same(self.current(a), b)]
        out += [f"{phase} changes the parameter {n} (updating parameters is the optimizer's job)"
                for n, a in params.items() if not same(self.current(a), kept_params[n])]
        return out

    def side_effects(self, sample: Sample) -> None:
        p = sample.problem
        params, args = self.param_arrays(p), self.arg_arrays(p)
        layer = self.build(p, params)
        shared = self.shared(layer, params)
        kept_args, kept_params = _copies(args), {k: v.copy() for k, v in shared.items()}
        self.call(layer, "forward", args, p)
        forward = self.changed("forward", args, kept_args, shared, kept_params)
        if forward:
            self.add("side-effect", None, "; ".join(forward), topic="forward")
        kept_args, kept_params = _copies(args), {k: v.copy() for k, v in shared.items()}
        given = copy(p.dout)
        grads = self.gradient_arrays_live(layer, given, p)
        first = self.snapshot(grads)
        problems, example = self.memory_problems(grads, given, p.dout)
        problems += self.changed("backward", args, kept_args, shared, kept_params)
        again = self.gradient_arrays(layer, copy(p.dout), p)
        if not problems and not all_same(again, first):
            problems.append("a second backward with the same dout gives another result (backward changes the "
                            "layer's state, e.g. accumulates into dW)")
        if problems:
            self.add("side-effect", None, "; ".join(problems), counterexample=example, topic="backward")

    def gradient_arrays_live(self, layer: Any, dout: Any, problem: ArrayProblem) -> dict[str, np.ndarray]:
        """The gradients of one backward as returned or stored (not copied: memory is checked)."""
        grads = self.run_backward(layer, dout, problem)
        return {k: v for k, v in grads.items() if isinstance(v, np.ndarray)}

    def copied_params(self, sample: Sample) -> None:
        """After each parameter is changed in place, as an optimizer does, the output must follow."""
        p = sample.problem
        params = self.param_arrays(p)
        layer = self.build(p, params)
        arrays = self.shared(layer, params)
        if not arrays:
            return
        before, ref_before = copy(self.output(layer, p)), self.reference(sample)[0]
        copied = []
        for symbol in self.spec.params:
            array = arrays.get(symbol.name)
            if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
                continue
            kept = array.copy()
            array += 0.5 + self.rng.standard_normal(array.shape)
            moved = self.reference_output(p, {symbol: array.copy()})
            after = self.output(layer, p)
            if not np.allclose(moved, ref_before, rtol=1e-6) and same(after, before):
                copied.append(symbol.name)
            array[...] = kept
        if copied:
            self.add("side-effect", None, self.copied_text(copied), counterexample={"copied": copied},
                     topic="copied")

    def copied_text(self, copied: list[str]) -> str:
        names = ", ".join(copied)
        first = copied[0]
        return (f"the layer copies its parameters instead of sharing them: after {names} changed in place, as an "
                f"optimizer changes them ({first} -= lr * d{first}), forward still gives the old output, so "
                f"training would never update this layer (keep the arrays given to the constructor: "
                f"self.{first} = {first})")

    def other_problem(self, problem: ArrayProblem) -> ArrayProblem:
        """A second batch (of another size) for the same parameters."""
        sizes = dict(problem.sizes)
        if self.batch is not None:
            sizes[self.batch] = SECOND_BATCH
        other = self.problem(sizes, 5)
        other.values.update({s: problem.values[s].copy() for s in self.spec.params})
        return other

    def stale_cache(self, sample: Sample) -> None:
        p = sample.problem
        other = self.other_problem(p)
        fresh = self.fresh_gradients(other, other.dout)
        reused, raised = self.reused_gradients(p, other)
        if not all_same(reused, fresh):
            why = f" (backward raised {raised})" if raised else ""
            self.add("stale-cache", None, "forward(x1); forward(x2); backward(dout) differs from a fresh forward(x2); "
                     f"backward(dout), with x2 a batch of {SECOND_BATCH}{why}: the cache is not refreshed by every "
                     "forward", topic="reuse")
        mine = self.fresh_gradients(p, p.dout)
        try:
            a, b = self.build(p), self.build(other)
            self.call(a, "forward", self.arg_arrays(p), p)
            self.call(b, "forward", self.arg_arrays(other), other)
            from_a = self.gradient_arrays(a, copy(p.dout), p)
        except UserError:
            from_a = None
        if not all_same(from_a, mine):
            self.add("stale-cache", None, "two instances share their cache: a forward on one changes the other's "
                     "backward (state kept on the class, not on self?)", topic="shared")
        self.buffers(sample)

    def reused_gradients(self, first: ArrayProblem, second: ArrayProblem) -> tuple[dict | None, str]:
        try:
            layer = self.build(first)
            self.call(layer, "forward", self.arg_arrays(first), first)
            self.call(layer, "forward", self.arg_arrays(second), second)
            return self.gradient_arrays(layer, copy(second.dout), second), ""
        except UserError as err:
            return None, f"{type(err.exc).__name__}: {err.exc}"

    def buffers(self, sample: Sample) -> None:
        """Arrays one call returned or stored, overwritten by the next call (same sizes, other values)."""
        p = sample.problem
        q = self.problem(dict(p.sizes), 6)
        q.values.update({s: p.values[s].copy() for s in self.spec.params})
        layer = self.build(p)
        out = {self.label("forward"): self.call(layer, "forward", self.arg_arrays(p), p)}
        kept = self.snapshot(out)
        self.call(layer, "forward", self.arg_arrays(q), q)
        self.overwritten(out, kept, "forward(x1)", "forward(x2)")
        live = {f"d{k}": v for k, v in self.gradient_arrays_live(layer, copy(q.dout), q).items()}
        kept = self.snapshot(live)
        self.run_backward(layer, 0.5 if self.scalar else douts(self.rng, np.shape(q.dout)), q)
        self.overwritten(live, kept, "backward(dout1)", "backward(dout2)")

    def linearity(self, sample: Sample) -> None:
        """backward(0) = 0, backward(2 d) = 2 backward(d), backward(d + e) = backward(d) + backward(e)."""
        p = sample.problem
        if self.scalar:
            d, e = 1.0, 0.625
        else:
            d, e = douts(self.rng, np.shape(p.dout)), douts(self.rng, np.shape(p.dout))
        runs = {k: self.fresh_gradients(p, v) for k, v in (("d", d), ("e", e), ("2d", 2 * d), ("d+e", d + e),
                                                           ("0", 0 * d))}
        ignored = []
        for s in self.checked:
            g = {k: v.get(s.name) for k, v in runs.items()}
            if any(v is None or v.shape != g["d"].shape for v in g.values()):
                continue
            problems = linearity_problems({k: v.astype(float) for k, v in g.items()})
            if problems[:1] == ["ignores"] and self.scalar and _default_is_one(self.build(p)):
                ignored.append(f"d{s.name}")
                continue
            if problems:
                text = "; ".join(IGNORES if q == "ignores" else q for q in problems)
                self.add("wrong-math", s.name, "backward is not linear in dout: " + text, topic="linearity")
        if ignored:
            self.notes.append(f"backward ignores dout: it gives {', '.join(ignored)} for dout = 1, its default (the "
                              "book's convention for the last layer: right when the loss ends the network, wrong "
                              "when the loss is scaled or added to another one)")


# -- networks ------------------------------------------------------------------------------------
class NetworkVerifier(ArrayVerifier):
    """A network with the book's interface: ``params``, ``predict(x)``, ``loss(x, t)`` and
    ``gradient(x, t)`` returning a dict of the parameters' gradients."""

    network = True

    def __init__(self, factory: Callable[..., Any], spec: Spec, seed: int, examples: Iterable[Any],
                 current: Callable[[Any], Any] | None = None):
        super().__init__(factory, spec, seed, examples, current)
        self.checked = list(spec.params)
        self.tallies = {"forward": Tally(), "predict": Tally(), **{s.name: Tally() for s in self.checked}}
        self.size_dims = _size_dims(spec, self.batch)
        arity = _arity(factory)
        self.by_sizes = arity is not None and arity == len(self.size_dims) != len(spec.params)

    def interface_hint(self) -> str:
        return " (a network needs the book's predict, loss and gradient)"

    def problem(self, sizes: dict, offset: int) -> ArrayProblem:
        """Weights as training sees them: N(0, 1/fan_in) matrices, biases of 0.1, so that the
        scores stay moderate (standard normal weights give scores of 10 and more, where the
        book's ``log(y + 1e-7)`` is off by a few percent: not an ordinary value)."""
        problem = super().problem(sizes, offset)
        for p in self.spec.params:
            value = problem.values[p]
            problem.values[p] = value / np.sqrt(value.shape[0]) if value.ndim > 1 else 0.1 * value
        return problem

    def build(self, problem: ArrayProblem, params: list[np.ndarray] | None = None) -> Any:
        """``cls(*params)``, or the book's ``cls(*sizes)`` with ``params`` then set in place."""
        params = self.param_arrays(problem) if params is None else params
        if not self.by_sizes:
            return super().build(problem, params)
        sizes = tuple(int(problem.sizes[d]) for d in self.size_dims)
        net = call("the constructor", self.factory, sizes, self.shape_of(problem))
        table = getattr(net, "params", None)
        for symbol, value in zip(self.spec.params, params):
            target = table.get(symbol.name) if isinstance(table, Mapping) else None
            if not isinstance(target, np.ndarray):
                raise Mismatch("exception", f"built from the sizes {sizes}, the network has no params"
                                f"[{symbol.name!r}] array (the book's TwoLayerNet keeps its parameters in self.params)")
            if target.shape != value.shape:
                raise Mismatch("shape", f"built from the sizes {sizes}, params[{symbol.name!r}] has shape "
                                f"{target.shape}, not {_dims_text(self.spec.shapes[symbol])} = {value.shape}")
            target[...] = value  # in place, as the book's optimizer changes them
        return net

    def shared(self, layer: Any, params: list[np.ndarray]) -> dict[str, np.ndarray]:
        table = getattr(layer, "params", None)
        if not isinstance(table, Mapping):
            return super().shared(layer, params) if not self.by_sizes else {}
        return {k: v for k, v in table.items() if isinstance(v, np.ndarray)}

    def output(self, layer: Any, problem: ArrayProblem) -> np.ndarray | None:
        return as_array(self.call(layer, "loss", self.arg_arrays(problem), problem))

    def label(self, name: str) -> str:
        return {"forward": "loss(x, t)", "predict": "predict(x)"}.get(name, f"grads[{name!r}]")

    def missing_text(self, name: str) -> str:
        return f"gradient(x, t) gave no grads[{name!r}]"

    def gradients(self, net: Any, problem: ArrayProblem) -> Mapping:
        grads = self.call(net, "gradient", self.arg_arrays(problem), problem)
        if not isinstance(grads, Mapping):
            raise Mismatch("shape", f"gradient(x, t) returned {type(grads).__name__}, not a dict of the "
                            "parameters' gradients (the book's grads['W1'], ...)")
        return grads

    def gradient_copies(self, net: Any, problem: ArrayProblem) -> dict[str, np.ndarray]:
        grads = self.gradients(net, problem)
        return {k: np.array(a) for k, v in grads.items() if (a := as_array(v)) is not None}

    def values(self, sample: Sample) -> None:
        p = sample.problem
        out_ref, predict_ref = self.reference(sample)
        net = self.build(p)
        loss = self.call(net, "loss", self.arg_arrays(p), p)
        predict = self.call(net, "predict", self.arg_arrays(p)[:len(self.spec.inputs)], p)
        grads = self.gradients(net, p)
        self.compare_values("forward", loss, out_ref, sample)
        self.compare_values("predict", predict, predict_ref, sample)
        for s in self.checked:
            self.compare_gradient(s, grads.get(s.name, _MISSING), sample)

    def copied_params(self, sample: Sample) -> None:
        super().copied_params(sample)
        if self.by_sizes and ("side-effect", None) in self.findings and "copies" in self.findings[
                ("side-effect", None)].message:
            self.values_unreachable = True
            self.findings[("side-effect", None)].message += ("; values not checked: the network does not compute "
                                                             "with the arrays in its params")

    def copied_text(self, copied: list[str]) -> str:
        names = ", ".join(f"params[{n!r}]" for n in copied)
        return (f"the network copies its parameters instead of sharing them: after {names} changed in place, "
                "as the book's optimizer changes them (params[key] -= lr * grads[key]), loss(x, t) stays the "
                "same, so training would never update the network (its layers must hold the very arrays in params)")

    def side_effects(self, sample: Sample) -> None:
        p = sample.problem
        net = self.build(p)
        args, shared = self.arg_arrays(p), self.shared(net, [])
        kept_args, kept_params = _copies(args), {k: v.copy() for k, v in shared.items()}
        grads = self.call(net, "gradient", args, p)
        problems = self.changed("gradient(x, t)", args, kept_args, shared, kept_params)
        arrays = [(k, v) for k, v in grads.items() if isinstance(v, np.ndarray)] if isinstance(grads, Mapping) else []
        pairs = [f"grads[{a!r}] and grads[{b!r}]" for i, (a, g) in enumerate(arrays) for b, h in arrays[i + 1:]
                 if np.shares_memory(g, h)]
        pairs += [f"grads[{a!r}] and params[{b!r}]" for a, g in arrays for b, h in shared.items()
                  if np.shares_memory(g, h)]
        if pairs:
            problems.append(f"{', '.join(pairs)} share memory")
        if problems:
            self.add("side-effect", None, "; ".join(problems), topic="gradient")

    def stale_cache(self, sample: Sample) -> None:
        p = sample.problem
        other = self.other_problem(p)
        fresh = self.gradient_copies(self.build(other), other)
        net = self.build(p)
        live = {f"grads[{k!r}]": v for k, v in self.gradients(net, p).items()}
        kept = self.snapshot(live)
        reused = self.gradient_copies(net, other)
        self.overwritten(live, kept, "gradient(x1, t1)", "gradient(x2, t2)")
        if not all_same(reused, fresh):
            self.add("stale-cache", None, f"gradient(x1, t1); gradient(x2, t2) differs from a fresh gradient(x2, t2), "
                     f"with x2 a batch of {SECOND_BATCH}: something of the first call is kept", topic="reuse")

    def linearity(self, sample: Sample) -> None:
        """``gradient(x, t)`` takes no upstream gradient: nothing to check."""
