"""The array-API backend: the book's layer class on any array-API array.

The class has the numpy backend's shape and statements (:mod:`symbackprop.codegen.scaffold`),
printed as functions of a namespace ``xp`` instead of ``np``: ``forward`` takes it from its
arguments with ``array_api_compat.array_namespace`` (numpy, PyTorch, JAX, CuPy, Dask arrays
through array-api-compat's wrappers; ``array_api_strict``, and any array that has
``__array_namespace__``, as themselves) and keeps it for ``backward``.  The spellings are the
standard's: ``xp.atan2``, ``xp.pow``, ``xp.sum(a, axis=1, keepdims=True)``, ``a @ b``,
``a.T`` (matrices only), ``xp.take(xp.eye(K, ...), t, axis=0)`` for integer labels, and a
boolean mask applied as ``g*xp.astype(mask, g.dtype)`` (``xp_masked``: the standard defines
no promotion of a boolean array with a float one, and ``where`` is slower).  The stable forms stay: ``logaddexp``, ``log1p`` and
``expm1`` are in the standard, and the max-shifted softmax, log-softmax and logsumexp
(not in it) are module-level helpers written in it (``xp_softmax(xp, a, axis)``).

A function the standard lacks (``cbrt``, ``heaviside``, the ``scipy.special`` family) is
refused with a one-line message naming it.  A network (``predict`` declared) gets the
book's methods on its parameters' namespace (``predict``, ``accuracy``, ``gradient``,
``numerical_gradient``, which writes into the parameters: not for jax's immutable arrays);
``initialized`` draws numpy arrays.

Why a backend of its own and not the default numpy class: the default stays numpy's own
(``numpy`` its only import, the readable class of the README, the speed bars of
``benchmarks/`` untouched by construction), while this class pays for
``array_namespace`` and array-api-compat's wrappers on every call (measured in
``benchmarks/RESULTS.md``).  ``pip install '.[array-api]'``.
"""
from __future__ import annotations

import re

import sympy

from ..derivation.model import Derivation
from ..errors import GenerationError
from ..lang.functions import SPECIAL
from . import scaffold
from .numpy import NumpyLayerPrinter
from .scaffold import INDENT

#: numpy spellings (the function table's ``numpy`` column, and the printer's own) whose
#: array-API name differs.
SPELLING = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2", "arcsinh": "asinh",
            "arccosh": "acosh", "arctanh": "atanh", "power": "pow"}

#: The standard's functions the printer may call (array API 2023.12 and later).
STANDARD = frozenset({
    "abs", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cos", "cosh", "exp", "expm1", "hypot",
    "log", "log1p", "log2", "log10", "logaddexp", "maximum", "minimum", "pow", "sign", "sin", "sinh", "sqrt",
    "square", "tan", "tanh", "where", "sum", "mean", "max", "min", "expand_dims", "broadcast_to", "zeros_like",
    "clip",
})

#: Names the generated module gives its own meaning.
RESERVED = frozenset({"xp", "array_api_compat", "xp_namespace", "xp_masked", "xp_softmax", "xp_log_softmax", "xp_logsumexp"})

#: How ``forward`` finds its namespace: from the arrays among its arguments.
NAMESPACE = '''def xp_namespace(*arguments):
    """The array-API namespace of the arrays among the arguments (Python numbers take the
    others' type, as in the standard); numpy's when all are numbers."""
    arrays = [a for a in arguments if not isinstance(a, (bool, int, float, complex))]
    return array_api_compat.array_namespace(*arrays) if arrays else array_api_compat.array_namespace(np.asarray(0.0))'''

#: Module-level helpers in the standard's functions: the stable forms of the array atoms.
HELPERS = {
    "xp_masked": '''def xp_masked(xp, g, mask):
    """g where mask holds, 0 elsewhere: g times the mask made g's dtype (where is slower);
    a Python number times the mask made the library's default float (numpy's float64)."""
    if isinstance(g, (bool, int, float)):
        info = xp.__array_namespace_info__()
        return g * xp.astype(mask, info.default_dtypes(device=array_api_compat.device(mask))["real floating"])
    return g * xp.astype(mask, g.dtype)''',
    "xp_softmax": '''def xp_softmax(xp, a, axis):
    """exp(a) / sum(exp(a)), shifted by the maximum so that exp cannot overflow."""
    e = xp.exp(a - xp.max(a, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)''',
    "xp_log_softmax": '''def xp_log_softmax(xp, a, axis):
    """log(softmax(a)) without forming softmax: a - max - log(sum(exp(a - max)))."""
    shifted = a - xp.max(a, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))''',
    "xp_logsumexp": '''def xp_logsumexp(xp, a, axis, keepdims):
    """log(sum(exp(a))), shifted by the maximum so that exp cannot overflow."""
    top = xp.max(a, axis=axis, keepdims=True)
    out = top + xp.log(xp.sum(xp.exp(a - top), axis=axis, keepdims=True))
    return out if keepdims else xp.squeeze(out, axis=axis)''',
}


def refused(name: str) -> GenerationError:
    return GenerationError(f"the array API standard has no function '{name}': use --backend numpy for this declaration")


class ArrayApiPrinter(NumpyLayerPrinter):
    """Prints expressions of a derivation as calls into an array-API namespace ``xp``."""

    constants = "xp"  # xp.pi, xp.e: constants of the standard

    def _np(self, name: str) -> str:
        if name.startswith(SPECIAL):
            raise refused(name[len(SPECIAL):])
        spelled = SPELLING.get(name, name)
        if spelled not in STANDARD:
            raise refused(name)
        return f"xp.{spelled}"

    def _print_polygamma(self, e):
        raise refused("digamma" if e.args[0] == 0 else "polygamma")

    def _indicator(self, e) -> bool:
        """A boolean mask, or the indicator ``Piecewise((1, condition), (0, True))``."""
        return self._is_mask(e) or (isinstance(e, sympy.Piecewise) and len(e.args) == 2 and e.args[0][0] == 1
                                    and e.args[1] == (0, True))

    def _print_Mul(self, e):
        """A product with boolean factors as ``xp_masked(xp, rest, mask)``: the standard
        promotes no boolean array with a float one (numpy's ``g*mask``)."""
        conditions = [f for f in e.args if self._indicator(f)]
        if not conditions:
            return super()._print_Mul(e)
        rest = sympy.Mul(*[f for f in e.args if f not in conditions])
        masks = [self._print(f.args[0][1] if isinstance(f, sympy.Piecewise) else f) for f in conditions]
        cond = masks[0] if len(masks) == 1 else f"({' & '.join(masks)})"
        return f"xp_masked(xp, {self._print(rest)}, {cond})"

    def _print_Piecewise(self, e):
        if self._indicator(e):  # alone, not a factor: the 0/1 values themselves
            return f"xp_masked(xp, 1.0, {self._print(e.args[0][1])})"
        return super()._print_Piecewise(e)

    def _print_LogSumExp(self, e):
        return f"xp_logsumexp(xp, {self._print(e.args[0])}, axis={self._axis(e.args[1])}, keepdims={e.keepdims})"

    def _print_Softmax(self, e):
        return f"xp_softmax(xp, {self._print(e.args[0])}, axis={int(e.args[1])})"

    def _print_LogSoftmax(self, e):
        return f"xp_log_softmax(xp, {self._print(e.args[0])}, axis={int(e.args[1])})"

    def _print_ExpandDims(self, e):
        text = self._print(e.args[0])
        for axis in sorted(int(a) for a in e.args[1]):
            text = f"xp.expand_dims({text}, axis={axis})"
        return text

    def _spread(self, array: str, shape: str) -> str:
        return f"xp.asarray(xp.broadcast_to({array}, {shape}), copy=True)"

    def _filled(self, shape: str, value) -> str:
        return f"xp.full({shape}, {self._print(sympy.Float(value))}, dtype=xp.asarray(dout).dtype)"


def onehot_labels(spec) -> list[str]:
    """Integer labels made one-hot rows of the first input's dtype, on its device."""
    lines = []
    first = spec.inputs[0].name
    for kind, t, axis in spec.assumptions:
        shape = spec.shapes[t]
        if kind == "onehot" and axis == len(shape) - 1:
            size = shape[axis]
            size = size.name if isinstance(size, sympy.Symbol) else str(size)
            lines += [f"if {t.name}.ndim == {len(shape) - 1}:  # integer labels: make one-hot rows",
                      f"{INDENT}{t.name} = xp.take(xp.eye({size}, dtype={first}.dtype, "
                      f"device=array_api_compat.device({first})), {t.name}, axis=0)"]
    return lines


#: Spellings of the numpy network methods (``scaffold.network_methods``) that differ here.
_NETWORK = {"guess = np.argmax(self.predict(": "guess = xp.argmax(self.predict(",
            "grad = np.zeros_like(value)": "grad = xp.zeros_like(value)",
            "saved = value[index]": "saved = xp.asarray(value[index], copy=True)"}  # torch: an element is a view


def network_methods(derivation: Derivation) -> list[str]:
    """The book's network interface (``predict``, ``accuracy``, ``gradient``,
    ``numerical_gradient``) on the namespace of the parameters; ``initialized`` still
    draws numpy arrays (a network of another library's arrays is built from its own)."""
    lines = scaffold.network_methods(derivation, ArrayApiPrinter)
    spec = derivation.spec
    labels = spec.constants[0].name
    inputs = [s.name for s in spec.inputs]
    out, applied = [], set()
    for line in lines:
        stripped = line.strip()
        indent = line[:len(line) - len(line.lstrip())]
        if stripped.startswith(("def predict(self", "def accuracy(self")):
            out += [line, f"{indent}{INDENT}xp = xp_namespace({', '.join(inputs)}, *self.params.values())"]
            applied.add("def")
            continue
        if stripped.startswith("grads = {}"):  # numerical_gradient: the namespace of the parameters
            out.append(f"{indent}xp = xp_namespace(*self.params.values())")
        if stripped.startswith(f"{labels} = {labels} if np.ndim({labels}) == 1 else np.argmax("):
            line = f"{indent}{labels} = {labels} if {labels}.ndim == 1 else xp.argmax({labels}, axis=1)"
            applied.add("labels")
        elif stripped.startswith("return float(np.mean(guess == "):
            line = f"{indent}return float(xp.count_nonzero(guess == {labels})) / guess.shape[0]"
            applied.add("mean")
        for old, new in _NETWORK.items():
            if old in line:
                line = line.replace(old, new)
                applied.add(old)
        out.append(line)
    missing = {"def", "labels", "mean", *_NETWORK} - applied
    if missing:  # the numpy methods changed: this translation must follow
        raise GenerationError(f"array-api network methods: no line for {sorted(missing)}")
    return out


def module(derivation: Derivation, name: str | None = None) -> str:
    """The source of a module defining the layer class, its arrays of any array-API library.

    Parameters
    ----------
    derivation : Derivation
    name : str, optional
        Class name; default from the declaration's name.
    """
    spec = derivation.spec
    for used in scaffold.names_of(derivation):
        if used in RESERVED:
            raise GenerationError(f"'{used}' cannot appear in array-api code (it names the namespace or a helper "
                                  "there): rename it in the declaration")
    arrays = [*(s.name for s in (*spec.inputs, *spec.constants)), *scaffold.param_refs(spec).values()]
    forward = scaffold.forward_lines(derivation, ArrayApiPrinter, onehot_labels)
    forward = [f"xp = xp_namespace({', '.join(arrays)})", *forward[:-1], "self.xp = xp",
               forward[-1]]
    backward = [line.replace("np.zeros_like(", "xp.zeros_like(")
                for line in scaffold.backward_lines(derivation, ArrayApiPrinter)]
    backward = ["xp = self.xp", *backward]
    text = "\n".join([*forward, *backward])
    definitions = ["", "", *NAMESPACE.splitlines()]
    definitions += [line for helper, source in HELPERS.items() if re.search(rf"\b{helper}\(", text)
                    for line in ["", "", *source.splitlines()]]
    imports = ["import array_api_compat", "import numpy as np"]
    network = network_methods(derivation) if spec.predict is not None else None
    text = "\n".join([text, *(network or [])])
    definitions = ["", "", *NAMESPACE.splitlines()]
    definitions += [line for helper, source in HELPERS.items() if re.search(rf"\b{helper}\(", text)
                    for line in ["", "", *source.splitlines()]]
    parts = scaffold.Parts(imports=imports, definitions=definitions, state=["self.xp = None"], forward=forward,
                           backward=backward, methods=[], helpers=False, network=network)
    return scaffold.module(derivation, name, parts)


__all__ = ["ArrayApiPrinter", "HELPERS", "RESERVED", "SPELLING", "STANDARD", "module"]
