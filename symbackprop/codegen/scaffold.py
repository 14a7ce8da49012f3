"""The class scaffold: a :class:`~symbackprop.derivation.model.Derivation` as a layer class.

The class has the shape of the book's layers (``forward`` caches the minimum,
``backward(dout)`` returns the input gradients), imports numpy only, and is printed
by :class:`~symbackprop.codegen.numpy.NumpyLayerPrinter` with common-subexpression
elimination; a backend may replace the method bodies and add imports and definitions
(:class:`Parts`).  The same derivation always gives the same bytes.
"""
from __future__ import annotations

import itertools
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from .. import indexed, ops
from ..derivation.model import Derivation
from ..errors import GenerationError
from ..escape import in_docstring
from ..lang.functions import SPECIAL
from ..lang.parser import is_identifier
from ..lang.stable import stable
from ..lang.text import format_statement
from ..spec.model import DOUT
from ..version import __version__
from .numpy import HELPERS, NumpyLayerPrinter

INDENT = "    "


@dataclass
class Parts:
    """What a backend contributes to the generated module and class (see :func:`module`)."""

    imports: list[str]
    definitions: list[str]
    state: list[str]
    forward: list[str]
    backward: list[str]
    methods: list[str]
    helpers: bool = True  # the numpy helpers (softmax, ...) the body calls; False: the backend defines its own
    network: list[str] | None = None  # a network's methods (predict, accuracy, ...); None: network_methods'

_OVERFLOWING = re.compile(r"\b[nx]p\.(exp|expm1|cosh|sinh)\(")  # numpy, or an array-API namespace


def class_name(name: str) -> str:
    """``"Apples and oranges"`` -> ``ApplesAndOranges``; a valid, non-keyword identifier."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Layer"
    if text[0].isdigit():
        text = "Layer" + text
    if not is_identifier(text):
        raise GenerationError(f"cannot make a class name from {name!r}")
    return text


#: Names generated code gives its own meaning: modules, helpers, the fused kernels' (all ``_...``).
RESERVED = frozenset({"self", "np", "math", "nb", "special", "inputs", *HELPERS})


def _check_names(derivation: Derivation) -> None:
    for name in names_of(derivation):
        if not is_identifier(name) or name in RESERVED or name.startswith("_"):
            raise GenerationError(f"'{name}' cannot appear in generated code (reserved there, or not a safe "
                                  "identifier): rename it in the declaration")


def statements(pairs: list[tuple[sympy.Symbol, sympy.Expr]], printer: NumpyLayerPrinter,
                reserved: set[str]) -> list[str]:
    """``name = expr`` lines in order, each with its repeated subexpressions pulled out
    first as ``e0, e1, ...`` (constants stay inline: they print as one number)."""
    fresh = (sympy.Symbol(f"e{i}", real=True) for i in itertools.count() if f"e{i}" not in reserved)
    lines = []
    for symbol, expr in pairs:
        # index atoms stay whole: their maps and ranges are not values to pull out
        hidden = {a: sympy.Dummy(f"atom{k}") for k, a in enumerate(
            sorted(expr.atoms(*indexed.INDEX_ATOMS), key=sympy.default_sort_key))}
        expr = expr.xreplace(hidden)
        back = {d: a for a, d in hidden.items()}
        # stable forms first: pulled out by cse, exp(x) in exp(x)/(1 + exp(x)) could not become the logistic
        replacements, (reduced,) = sympy.cse([_keep_dtype(stable(expr))], symbols=fresh, order="none")
        replacements = [(r, e.xreplace(back)) for r, e in replacements]
        reduced = reduced.xreplace(back)
        constants = {s: e for s, e in replacements if not e.free_symbols}
        for s, e in replacements:
            if s not in constants:
                lines.append(f"{printer.doprint(s)} = {printer.doprint(e.xreplace(constants))}")
        lines.append(f"{printer.doprint(symbol)} = {printer.doprint(reduced.xreplace(constants))}")
    return lines


def _keep_dtype(expr: sympy.Basic) -> sympy.Basic:
    """``where(c, 1, 0.01)*dout`` as ``where(c, dout, 0.01*dout)``: a ``where`` of plain numbers
    is a float64 array, which would turn a float32 ``dout`` into a float64 gradient."""
    def numeric(e):
        return isinstance(e, sympy.Piecewise) and all(v.is_Number for v, _ in e.args) and not (
            len(e.args) == 2 and e.args[0][0] == 1 and e.args[1][0] == 0)  # an indicator prints as the mask

    def spread(e):
        choice = next(f for f in e.args if numeric(f))
        rest = sympy.Mul(*[f for f in e.args if f is not choice])
        return sympy.Piecewise(*[(v * rest, c) for v, c in choice.args])

    return expr.replace(lambda e: isinstance(e, sympy.Mul) and sum(map(numeric, e.args)) == 1, spread)


def _may_overflow(pairs: Sequence[tuple[sympy.Symbol, sympy.Expr]]) -> bool:
    """Can an ``exp`` of these statements overflow?  Not when its argument is known to be
    at most 0 (``exp(logp)`` with ``logp = log_softmax(a)``); ``cosh`` and ``sinh`` always can."""
    definitions: dict = {}
    for symbol, expr in pairs:
        if expr.atoms(sympy.cosh, sympy.sinh):
            return True
        if any(not f.args[0].xreplace(definitions).is_nonpositive for f in expr.atoms(sympy.exp)):
            return True
        definitions[symbol] = expr.xreplace(definitions)
    return False


def guarded(lines: list[str], pairs: Sequence[tuple[sympy.Symbol, sympy.Expr]]) -> list[str]:
    """Wrap lines whose ``exp`` may overflow to inf harmlessly (``1/(1 + inf) = 0``)."""
    if not any(_OVERFLOWING.search(line) for line in lines) or not _may_overflow(pairs):
        return lines
    return ['with np.errstate(over="ignore"):  # exp overflows to inf where the limit is still exact',
            *[INDENT + line for line in lines]]


def forward_pairs(derivation: Derivation) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """The graph's nodes in order, with cached helpers (masks, sub-expressions) computed
    just before the first node that can use them, and stable forms of array atoms."""
    spec = derivation.spec
    helpers = {c.symbol: c for c in derivation.cache if c.symbol not in spec.inputs
               and c.symbol not in spec.constants and c.symbol not in dict(spec.graph)}
    definitions = dict(spec.graph)
    leaves = {*spec.inputs, *spec.params, *spec.constants, *spec.dims}
    pairs: list[tuple[sympy.Symbol, sympy.Expr]] = []
    for symbol, expr in spec.graph:
        if spec.outputs and symbol == spec.output:
            continue  # the outputs' stack: forward returns them as a tuple
        if spec.is_array:
            expr = ops.fuse_logs(expr, definitions)
        for h in helpers.values():
            if h.expr.free_symbols <= {s for s, _ in pairs} | leaves and h.symbol not in dict(pairs):
                pairs.append((h.symbol, h.expr))
        known = {h.expr: h.symbol for h in helpers.values() if h.symbol in dict(pairs) and not h.mask}
        pairs.append((symbol, expr.subs(known) if known else expr))
    return _shared_atoms(pairs, {s.name for s in leaves} | {s.name for s, _ in pairs})


def _shared_atoms(pairs: list[tuple[sympy.Symbol, sympy.Expr]], reserved: set[str]):
    """An array atom used by several statements is computed once, under a name of its own;
    ``softmax(a)`` beside ``log_softmax(a)`` becomes ``exp(log_softmax(a))``."""
    logs = {ops.Softmax(*e.args): sympy.exp(e) for _, x in pairs for e in x.atoms(ops.LogSoftmax)}
    pairs = [(s, e.xreplace(logs)) for s, e in pairs] if logs else pairs
    counts: dict[sympy.Basic, int] = {}
    for _, e in pairs:
        for atom in e.atoms(ops.LogSoftmax, ops.Softmax, ops.LogSumExp):
            counts[atom] = counts.get(atom, 0) + 1
    for atom in (a for a, n in counts.items() if n > 1):
        name = next(n for n in (f"logp{k or ''}" for k in itertools.count()) if n not in reserved)
        reserved.add(name)
        shared = ops.ArrayVar(name, real=True)
        first = next(j for j, (_, e) in enumerate(pairs) if e.has(atom))
        pairs = pairs[:first] + [(shared, atom)] + [(s, e.xreplace({atom: shared})) for s, e in pairs[first:]]
    return pairs


def dim_bindings(spec, dims: list[sympy.Symbol], names: dict[sympy.Symbol, str]) -> list[str]:
    """``N = x.shape[0]``: each dimension read off the first array declared with it."""
    lines = []
    for d in dims:
        for array in (*spec.inputs, *spec.params, *spec.constants):  # labels may come as integers
            shape = spec.shapes[array]
            if d in shape:
                lines.append(f"{d.name} = {names.get(array, array.name)}.shape[{list(shape).index(d)}]")
                break
    return lines


def onehot_labels(spec) -> list[str]:
    """Integer labels accepted where a one-hot constant is declared (along its last axis)."""
    lines = []
    for kind, t, axis in spec.assumptions:
        shape = spec.shapes[t]
        if kind == "onehot" and axis == len(shape) - 1:
            size = shape[axis]
            lines += [f"if np.ndim({t.name}) == {len(shape) - 1}:  # integer labels: make one-hot rows",
                      f"{INDENT}{t.name} = np.eye({size.name if isinstance(size, sympy.Symbol) else size}, "
                      f"dtype=np.result_type({spec.inputs[0].name}, 1.0))[{t.name}]"]  # float32 in, float32 out
    return lines


def forward_dims(derivation: Derivation, pairs) -> list[sympy.Symbol]:
    spec = derivation.spec
    used = set().union(*(e.free_symbols for _, e in pairs)) | set(derivation.dims_used)
    used |= {d for kind, value in spec.constraints if kind == "divides" for v in value for d in v.free_symbols}
    for _, t, axis in spec.assumptions:  # integer labels become one-hot rows of this size
        size = spec.shapes[t][axis]
        if isinstance(size, sympy.Symbol):
            used.add(size)
    return [d for d in spec.dims if d in used]


def param_refs(spec) -> dict[sympy.Symbol, str]:
    """Where parameters live: ``self.W`` on a layer, ``self.params["W1"]`` on a network."""
    if spec.predict is not None:
        return {p: f'self.params["{p.name}"]' for p in spec.params}
    return {p: f"self.{p.name}" for p in spec.params}


def hyper_refs(spec) -> dict[sympy.Symbol, str]:
    """Hyperparameters live on the layer: ``self.stride``."""
    return {h: f"self.{h.name}" for h in spec.hyper}


def grad_refs(spec) -> dict[sympy.Symbol, str]:
    """Where parameter gradients go: ``self.dW``, or ``self.grads["W1"]`` on a network."""
    refs = {}
    for p in spec.params:
        ref = f'self.grads["{p.name}"]' if spec.predict is not None else f"self.d{p.name}"
        refs[sympy.Symbol(f"d{p.name}", real=True)] = refs[ops.ArrayVar(f"d{p.name}", real=True)] = ref
    return refs


def tile_checks(spec, printer: NumpyLayerPrinter) -> list[str]:
    """``tile = true``: the forward refuses sizes whose windows leave input positions unread."""
    lines = []
    for kind, value in spec.constraints:
        if kind != "divides":
            continue
        span, stride = (printer.doprint(v) for v in value)
        lines += [f"if ({span}) % {stride}:",
                  f'{INDENT}raise ValueError(f"the stride {{{stride}}} does not divide {{{span}}}: windows would '
                  f'leave input positions unread (the declaration tiles)")']
    return lines


def forward_lines(derivation: Derivation, printer: type[NumpyLayerPrinter] = NumpyLayerPrinter,
                  labels=onehot_labels) -> list[str]:
    """Body of ``forward``: the graph's nodes in order, each cached value stored on self;
    ``printer`` (a subclass of the numpy printer) and ``labels`` (the one-hot lines) are a
    backend's own (the array-API backend's)."""
    spec = derivation.spec
    params = {**param_refs(spec), **hyper_refs(spec)}
    pairs = forward_pairs(derivation)
    dims = forward_dims(derivation, pairs)
    lines = dim_bindings(spec, [d for d in dims if d in spec.dims], params) + labels(spec)
    lines += tile_checks(spec, printer(params))
    reserved = {s.name for s, _ in pairs} | {s.name for s in (*spec.inputs, *spec.constants, *spec.dims)}
    lines += guarded(statements(pairs, printer(params), reserved), pairs)
    stored = [*derivation.cache_names, *(d.name for d in derivation.dims_used)]
    lines += [f"self.{name} = {name}" for name in stored]
    lines.append(f"return {', '.join(s.name for s in spec.outputs) or spec.output.name}")
    return lines


def upstream_names(spec) -> list[str]:
    """``backward``'s upstream gradients: ``dout``, or one per output (``dnext_h, dnext_c``)."""
    return [f"d{s.name}" for s in spec.outputs] or [DOUT.name]


def picked(pairs: list, spec) -> list:
    """The backward's steps with each output's upstream gradient, ``pick(dout, k)``, named
    ``d<output>`` as ``backward`` takes it (a step that only renames it dropped)."""
    if not spec.outputs:
        return pairs
    picks = set().union(*(e.atoms(ops.Pick) for _, e in pairs))
    swap = {p: ops.ArrayVar(f"d{spec.outputs[int(p.args[1])].name}", real=True) for p in picks}
    out = [(s, e.xreplace(swap)) for s, e in pairs]
    return [(s, e) for s, e in out if not (isinstance(e, sympy.Symbol) and e.name == s.name)]


def backward_lines(derivation: Derivation, printer: type[NumpyLayerPrinter] = NumpyLayerPrinter) -> list[str]:
    """Body of ``backward``: recomputed helpers, then ``d<name> = ...`` node by node;
    parameter gradients go to ``self.d<name>``, input gradients are returned."""
    spec = derivation.spec
    names = {c.symbol: f"self.{c.symbol.name}" for c in derivation.cache}
    names.update({s: f"self.{s.name}" for s in derivation.dims_used})
    names.update(param_refs(spec))
    names.update(hyper_refs(spec))
    names.update(grad_refs(spec))
    printing = printer(names, masks=derivation.masks)
    pairs = picked([(c.symbol, c.expr) for c in derivation.recompute] + list(derivation.steps), spec)
    reserved = {s.name for s, _ in pairs} | set(names_of(derivation)) | set(upstream_names(spec))
    lines = guarded(statements(pairs, printing, reserved), pairs)
    handed_out = {f"d{name}" for name in spec.input_names} | set(grad_refs(spec).values())
    lines = [fresh_gradient(line, handed_out) for line in lines]
    grads = ", ".join(f"d{name}" for name in spec.input_names)
    lines.append(f"return {grads or 'None'}")  # no inputs (an embedding): the book's backward returns None
    return lines


def _optional_input_grads(lines: list[str], spec) -> list[str]:
    """A network's input gradients computed only ``if inputs``: ``gradient()`` needs the
    parameters' alone, and ``dx = da1 @ W1.T`` is a third of a two-layer step's products.
    Only a statement no later one reads is made optional."""
    out = list(lines)
    for k, line in enumerate(out):
        target, _, value = line.strip().partition(" = ")
        if target not in {f"d{name}" for name in spec.input_names}:
            continue
        used = re.compile(rf"\b{target}\b")
        if not any(used.search(later) for later in out[k + 1:] if not later.strip().startswith("return ")):
            out[k] = f"{line} if inputs else None"
    return out


def fresh_gradient(line: str, handed_out: set[str]) -> str:
    """``dx = dout`` as ``dx = dout*1`` (the book's AddLayer), ``dx = 0`` as
    ``np.zeros_like(dout)``: a gradient handed to the caller must be an array of its own,
    of dout's shape and dtype, never ``dout`` itself or another gradient."""
    target, _, value = line.strip().partition(" = ")
    if target in handed_out and value == "0":  # a step's gradient, zero almost everywhere: an array still
        return line.replace(" = 0", f" = np.zeros_like({DOUT.name})")
    alias = value.isidentifier() and not keyword.iskeyword(value)  # a name, not None (jax's zero)
    return f"{line}*1" if target in handed_out and alias else line


def names_of(derivation: Derivation) -> list[str]:
    """Every name the generated class uses for a value of its own."""
    spec = derivation.spec
    return [s.name for s in (*spec.inputs, *spec.params, *spec.constants, *spec.dims, *spec.hyper)] + [
        n.name for n, _ in spec.graph] + [c.symbol.name for c in (*derivation.cache, *derivation.recompute)]


def _docstring(derivation: Derivation) -> list[str]:
    spec = derivation.spec
    graph = [format_statement(n.name, e) for n, e in spec.graph]
    backward = [format_statement(f"d{k}", v) if v.atoms(*indexed.INDEX_ATOMS) else
                f"d{k} = {derivation.readable(v, standalone=False)}" for k, v in derivation.backward.items()]
    backward += [f"{c.symbol.name} = {derivation.readable(c.expr, standalone=False)}"
                 for c in derivation.recompute if not c.mask]
    cache = ", ".join(derivation.cache_names) or "nothing"
    origin = f" from {in_docstring(spec.source)}" if spec.source else ""
    lines = ['"""' + "; ".join(graph), "", "backward: " + "; ".join(backward), f"cache: {cache}"]
    if spec.is_array:
        shapes = ", ".join(f"{s.name}: {ops.show_shape(spec.shapes[s])}"
                           for s in (*spec.inputs, *spec.params, *spec.constants))
        lines.append(f"shapes: {shapes}")
        if spec.hyper:
            lines.append("hyperparameters: " + ", ".join(f"{h.name} = {v}" for h, v in spec.hyper.items())
                         + " (fixed when the layer is built)")
        lines += [f"assumes: {kind}({t.name}, axis={axis})" for kind, t, axis in spec.assumptions]
    lines += [f"note: {in_docstring(n)}" for n in derivation.notes]
    lines += ["", f"Generated by symbackprop {__version__}{origin}.", '"""']
    return lines


def network_methods(derivation: Derivation, printer: type[NumpyLayerPrinter] = NumpyLayerPrinter) -> list[str]:
    """The book's TwoLayerNet interface around forward/backward (its section 5.7.2);
    ``predict`` printed by ``printer``."""
    spec = derivation.spec
    inputs = [s.name for s in spec.inputs]
    labels = [s.name for s in spec.constants]
    call = ", ".join([*inputs, *labels])
    stop = [s for s, _ in spec.graph].index(spec.predict) + 1
    pairs = [(s, ops.fuse_logs(e, dict(spec.graph))) for s, e in spec.graph[:stop]]
    reserved = {s.name for s, _ in pairs} | set(inputs)
    params = {**param_refs(spec), **hyper_refs(spec)}
    predict = dim_bindings(spec, [d for d in spec.dims if any(d in e.free_symbols for _, e in pairs)], params)
    predict += guarded(statements(pairs, printer(params), reserved), pairs) + [f"return {spec.predict.name}"]
    lines = ["", f"{INDENT}@classmethod", *initialized_lines(spec),
             "", f"{INDENT}def predict(self, {', '.join(inputs)}):",
             *[INDENT * 2 + line for line in predict],
             "", f"{INDENT}def loss(self, {call}):", f"{INDENT * 2}return self.forward({call})",
             "", f"{INDENT}def accuracy(self, {call}):",
             f"{INDENT * 2}guess = np.argmax(self.predict({', '.join(inputs)}), axis=1)",
             f"{INDENT * 2}{labels[0]} = {labels[0]} if np.ndim({labels[0]}) == 1 else np.argmax({labels[0]}, axis=1)",
             f"{INDENT * 2}return float(np.mean(guess == {labels[0]}))",
             "", f"{INDENT}def gradient(self, {call}):",
             f'{INDENT * 2}"""Backpropagation: the gradient of the loss for every parameter."""',
             f"{INDENT * 2}self.forward({call})", f"{INDENT * 2}self.backward(1.0, inputs=False)",
             f"{INDENT * 2}return self.grads",
             "", f"{INDENT}def numerical_gradient(self, {call}, h=1e-4):",
             f'{INDENT * 2}"""Central differences, one parameter element at a time (the book\'s chapter 4)."""',
             f"{INDENT * 2}grads = {{}}", f"{INDENT * 2}for name, value in self.params.items():",
             f"{INDENT * 3}grad = np.zeros_like(value)",
             f"{INDENT * 3}for index in np.ndindex(value.shape):",
             f"{INDENT * 4}saved = value[index]",
             f"{INDENT * 4}value[index] = saved + h",
             f"{INDENT * 4}up = self.loss({call})",
             f"{INDENT * 4}value[index] = saved - h",
             f"{INDENT * 4}down = self.loss({call})",
             f"{INDENT * 4}value[index] = saved",
             f"{INDENT * 4}grad[index] = (up - down) / (2 * h)",
             f"{INDENT * 3}grads[name] = grad", f"{INDENT * 2}return grads"]
    return lines


def initialized_lines(spec) -> list[str]:
    """The book's initialization as a class method taking the sizes the parameters' shapes use
    (a pooled size through the input's: ``IH``, ``IW``) and, after them, the hyperparameters."""
    hyper = set(spec.hyper)
    sizes = sorted({d for p in spec.params for e in spec.shapes[p] for d in e.free_symbols} - hyper, key=str)
    keywords = [f"{h.name}={v}" for h, v in spec.hyper.items()]
    init = ["rng = np.random.default_rng(seed)", "return cls("]
    for p in spec.params:
        shape = ", ".join(ops.size_text(d) for d in spec.shapes[p])
        init.append(f"{INDENT}weight_init_std * rng.standard_normal(({shape},))," if len(spec.shapes[p]) > 1
                    else f"{INDENT}np.zeros(({shape},)),")
    init += [f"{INDENT}{h.name}={h.name}," for h in spec.hyper] + [")"]
    signature = ", ".join(["cls", *(d.name for d in sizes), "weight_init_std=0.01", "seed=None", *keywords])
    return [f"{INDENT}def initialized({signature}):",
            f'{INDENT * 2}"""Weights drawn from N(0, weight_init_std**2), biases zero, as in the book."""',
            *[INDENT * 2 + line for line in init]]


def _helpers(body: str) -> list[str]:
    """Module-level numpy helpers (stable softmax and friends) the class body calls."""
    used: set[str] = set()
    text = body
    while True:  # helpers that call helpers (_window_max calls _windows)
        found = {name for name in HELPERS if re.search(rf"(?<![\w.]){name}\(", text)}
        if found <= used:
            break
        used |= found
        text = "\n".join([body, *(HELPERS[n] for n in used)])
    out = []
    for name, source in HELPERS.items():
        if name in used:
            out += ["", "", *source.splitlines()]
    return out


def module(derivation: Derivation, name: str | None = None, parts: Parts | None = None) -> str:
    """The source of a module defining one layer class in the book's shape.

    Parameters
    ----------
    derivation : Derivation
    name : str, optional
        Class name; default from the declaration's name.
    parts : Parts, optional
        A backend's own imports, definitions, state and method bodies (the fused
        kernels); default the readable numpy of this module, numpy its only import.
    """
    _check_names(derivation)
    fused = parts  # None: the numpy bodies below
    spec = derivation.spec
    cls = class_name(name or spec.name)
    params = [p.name for p in spec.params]
    body = [f"class {cls}:"]
    body += [INDENT + line if line else "" for line in _docstring(derivation)]
    hyper = [f"{h.name}={v}" for h, v in spec.hyper.items()]
    body += ["", f"{INDENT}def __init__({', '.join(['self', *params, *hyper])}):"]
    if spec.predict is not None:
        state = [f"self.params = {{{', '.join(f'{p!r}: {p}' for p in params)}}}".replace("'", '"'), "self.grads = {}"]
    else:
        state = [f"self.{p} = {p}" for p in params] + [f"self.d{p} = None" for p in params]
    state += [f"self.{h.name} = {h.name}" for h in spec.hyper]
    state += [f"self.{c} = None" for c in (*derivation.cache_names, *(d.name for d in derivation.dims_used))]
    state += fused.state if fused else []
    body += [f"{INDENT * 2}{line}" for line in state] or [f"{INDENT * 2}pass"]
    arguments = ", ".join(s.name for s in (*spec.inputs, *spec.constants))
    body += ["", f"{INDENT}def forward(self, {arguments}):"]
    body += [INDENT * 2 + line for line in (fused.forward if fused else forward_lines(derivation))]
    scalar_output = not spec.is_array or spec.shapes[spec.output] == ()
    backward = fused.backward if fused else backward_lines(derivation)
    signature = ["self", "dout=1.0" if scalar_output else "dout"] if not spec.outputs else ["self", *upstream_names(spec)]
    if spec.predict is not None:
        backward = _optional_input_grads(backward, spec)
        signature.append("inputs=True")
    body += ["", f"{INDENT}def backward({', '.join(signature)}):"]
    body += [INDENT * 2 + line for line in backward]
    body += fused.methods if fused else []
    if spec.predict is not None:
        body += fused.network if fused and fused.network is not None else network_methods(derivation)
    head = ['"""Generated by symbackprop: do not edit; regenerate from the declaration."""']
    imports = fused.imports if fused else ["import numpy as np"]
    helpers = _helpers("\n".join(body)) if fused is None or fused.helpers else []
    if re.search(rf"(?<![\w.]){re.escape(SPECIAL)}", "\n".join([*body, *helpers])):
        imports = [*imports, "from scipy import special"]
    head += imports + (fused.definitions if fused else [])
    return "\n".join([*head, *helpers, "", "", *body]) + "\n"
