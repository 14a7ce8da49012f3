"""The torch backend: a derivation as a ``torch.autograd.Function`` and an ``nn.Module``.

The generated module imports ``torch`` and ``math`` only.  Its ``<Name>Function.forward``
computes the graph with torch operations and saves exactly the derivation's cache with
``ctx.save_for_backward`` (the output ``y`` for sigmoid, a boolean mask for ReLU, nothing
for add; where torch's own kernels want another cache of the same bytes, that one:
softplus keeps ``x``, LayerNorm ``x`` and ``std``, :func:`torch_cache`), plus the parameters
its backward reads; ``backward`` computes the derived gradients,
:math:`\\bar{x} = \\text{dout}\\cdot y(1 - y)` for sigmoid, with torch operations, so that
it is itself differentiable (double backward).  A cached intermediate (batch norm's ``xn``
and ``std``, softmax-with-loss's ``e = y - t``) was computed in the forward, where
autograd records nothing, so it has no graph to the arguments: under ``create_graph=True``
(``torch.is_grad_enabled()`` in the backward) the backward recomputes the intermediates
from the arguments with the forward's own torch operations and differentiates through
them; otherwise it reads the saved ones, at no cost.  The forward holds the arguments for
this by weak reference, with their version counters (a double backward after an argument
was freed or modified in place raises, naming it: keep it until then), so nothing is
saved beyond the cache.  Never ``once_differentiable``, which gives zero second
derivatives without a word.

Constants take the dtype and device of the tensors they meet (Python numbers), or of
the first input (one-hot rows): nothing assumes the CPU.  ``<Name>`` is an
``nn.Module`` holding the parameters as ``nn.Parameter`` and calling the function.

Why ``torch.autograd.Function`` and not ``torch.library.custom_op`` by default: measured
(``benchmarks/RESULTS.md``), both take the same time on 1000x1000 arrays, while a custom
op costs about 50 microseconds more per forward + backward (the dispatcher, its schema),
registers a global op when its module is imported, and must return its cached
intermediates as outputs (its context sees only inputs and outputs); both support double
backward (a backward registered with ``register_autograd`` is differentiated like any
torch code).  The custom op, which ``torch.compile`` and ``torch.library.opcheck``
understand, is the ``torch-op`` backend (:mod:`symbackprop.codegen.torch_op`).
"""
from __future__ import annotations

import dataclasses
import functools

import sympy

from .. import ops
from ..derivation.model import Cached, Derivation
from ..errors import GenerationError
from ..lang.functions import SPECIAL, softplus
from . import frameworks, scaffold
from . import torch_cpu, torch_layer_norm
from ..lang.stable import stable
from ..spec.model import DOUT
from .numpy import NumpyLayerPrinter
from .scaffold import INDENT

#: numpy spellings (the function table's ``numpy`` column) whose torch name differs;
#: None: torch has no such function.  Every other spelling is ``torch.<same name>``.
TORCH_SPELLING: dict[str, str | None] = {
    f"{SPECIAL}erf": "special.erf", f"{SPECIAL}erfc": "special.erfc", f"{SPECIAL}erfinv": "special.erfinv",
    f"{SPECIAL}gammaln": "special.gammaln", f"{SPECIAL}digamma": "special.digamma",
    f"{SPECIAL}gamma": None, "cbrt": None, "heaviside": None,
}

#: The identity whose rows make integer labels one-hot, on the labels' device (never assumed CPU).
EYE = "torch.eye({size}, dtype={like}.dtype, device={like}.device)"

#: Names the generated module gives its own meaning.
RESERVED = frozenset({"torch", "math", "ctx", "super", *torch_cpu.HELPERS})


class Logistic(sympy.Function):
    """:math:`\\sigma(u) = 1/(1 + e^{-u})`, printed as ``torch.sigmoid``: one pass over memory,
    where ``1/(1 + torch.exp(-u))`` makes four (and torch's float64 ``exp`` is slow)."""


def _logistic_powers(expr: sympy.Basic) -> sympy.Basic:
    """``(1 + exp(v))**-n`` as ``Logistic(-v)**n`` (the stable rewrites leave it in that form)."""
    def is_one(e):
        if not (isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp < 0 and isinstance(e.base, sympy.Add)):
            return False
        terms = e.base.args
        return len(terms) == 2 and sympy.S.One in terms and any(isinstance(t, sympy.exp) for t in terms)

    def rewrite(e):
        (power,) = [t for t in e.base.args if isinstance(t, sympy.exp)]
        return Logistic(-power.args[0]) ** (-e.exp)

    return expr.replace(is_one, rewrite)


class SiluBackward(sympy.Function):
    """:math:`g\\,\\sigma(u)\\,(1 + u(1 - \\sigma(u)))`, the derivative of :math:`u\\,\\sigma(u)`
    times ``g``, printed as torch's one-pass kernel ``silu_backward(g, u)`` where the derived
    formula is six passes over memory; that kernel has no derivative, so under
    ``create_graph=True`` the formula is printed too."""


class SoftplusBackward(sympy.Function):
    """:math:`g\\,\\sigma(u)`, ``g`` times the derivative of :math:`\\log(1 + e^u)`, printed as
    torch's one-pass kernel ``softplus_backward(g, u, 1, 40)`` (``g`` where ``u > 40``, where
    :math:`\\sigma(u)` is 1 in float32 and float64 alike: exact), which torch differentiates
    twice; ``torch.sigmoid(u)*g`` is two passes."""


def softplus_kernels(pairs: list[tuple[sympy.Symbol, sympy.Expr]]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """Statements equal to ``g*sigma(u)`` as :class:`SoftplusBackward` ``(g, u)``, proved by
    cancelling the logistic out (``g`` left without ``exp``); ``u`` is tried from the
    arguments of the statement's exponentials."""
    out = []
    for symbol, expr in pairs:
        if expr.has(sympy.exp) and _small(expr) and not expr.atoms(SiluBackward, GeluTanhBackward):
            for u in sorted({s * a.args[0] for a in expr.atoms(sympy.exp) for s in (1, -1)}, key=str):
                if not u.free_symbols:
                    continue
                g = sympy.cancel(sympy.expand(expr * (1 + sympy.exp(-u))))
                if not g.has(sympy.exp) and g != 0 and DOUT in g.free_symbols:
                    expr = SoftplusBackward(g, u)
                    break
        out.append((symbol, expr))
    return out


def _is_logistic(e: sympy.Basic) -> bool:
    """``1/(1 + exp(-u))``, as the derivation writes a recomputed logistic."""
    return (isinstance(e, sympy.Pow) and e.exp == -1 and isinstance(e.base, sympy.Add) and len(e.base.args) == 2
            and sympy.S.One in e.base.args and any(isinstance(a, sympy.exp) for a in e.base.args))


class NonZero(sympy.Function):
    """``v != 0`` of a tensor ``v`` as ``v.bool()``: a cast that torch vectorizes (0.06 ms
    for 10^6 float32 elements, one thread), where its comparisons to a number run one element
    at a time (``x > 0``: 0.43 ms in either dtype; measured)."""


def relu_masks(pairs: list[tuple[sympy.Symbol, sympy.Expr]]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """A forward's mask ``m = u > 0`` beside ``y = max(u, 0)`` as ``m = (y != 0)``, computed
    right after ``y`` (:class:`NonZero`): the same booleans, since ``max(u, 0)`` is nonzero
    exactly where ``u > 0``, except where ``u`` is nan, which this mask passes as
    ``torch.relu``'s own backward does (``threshold_backward(g, nan, 0)`` is ``g``)."""
    clamped = {e.args[1] if e.args[0] == 0 else e.args[0]: s for s, e in pairs
               if isinstance(e, sympy.Max) and len(e.args) == 2 and 0 in e.args}
    moved = {s: u for s, e in pairs if isinstance(e, sympy.StrictGreaterThan) and e.rhs == 0
             and (u := e.lhs) in clamped}
    out = []
    for symbol, expr in pairs:
        if symbol in moved:
            continue
        out.append((symbol, expr))
        out += [(m, NonZero(symbol)) for m, u in moved.items() if clamped[u] == symbol]
    return out


def softmax_again(pairs: list[tuple[sympy.Symbol, sympy.Expr]]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """A forward's ``y = exp(l)`` of a statement ``l = log_softmax(a)`` as ``y = softmax(a)``:
    torch's softmax pass over ``a`` is faster than its ``exp`` over ``l`` (1000x1000, one
    thread: 0.60 against 0.83 ms in float32, 1.58 against 1.66 in float64; measured), the
    opposite of numpy, for which :func:`symbackprop.codegen.scaffold.forward_pairs` writes
    ``exp(log_softmax(a))``."""
    logs = {s: e for s, e in pairs if isinstance(e, ops.LogSoftmax)}
    return [(s, ops.Softmax(*logs[e.args[0]].args) if isinstance(e, sympy.exp) and e.args[0] in logs else e)
            for s, e in pairs]


class InPlaceAdd(sympy.Function):
    """``a + b`` in the memory of ``a`` (``a.add_(b)``, ``a.sub_(c)`` for ``b = -c``), where
    ``a`` is a fresh tensor of the forward that nothing reads afterwards; as ``a + b`` in code
    that autograd records (``TorchPrinter(recorded=True)``), since autograd may keep ``a``
    (softmax keeps its output)."""

    nargs = 2


#: Forward statements whose value is a fresh tensor (never a view of an argument).
FRESH = (ops.Softmax, ops.LogSoftmax, sympy.exp, sympy.log, sympy.tanh)


def in_place_sums(pairs: list[tuple[sympy.Symbol, sympy.Expr]], keep: set, shapes: Shapes | None) -> list:
    """A forward's ``e = a + b`` as ``InPlaceAdd(a, b)`` where ``a`` is a fresh tensor
    (:data:`FRESH`) of ``e``'s shape, neither kept nor read by any later statement:
    softmax-with-loss's ``e = y - t`` is then ``y.sub_(t)``, one array fewer to allocate and
    write (float32 forward + backward 1.25x -> 1.2x torch's ``cross_entropy``; measured)."""
    if not shapes:
        return pairs
    fresh = {s for s, e in pairs if isinstance(e, FRESH)}
    out = []
    for k, (symbol, expr) in enumerate(pairs):
        later = set().union(*(e.free_symbols for _, e in pairs[k + 1:]))
        a = next((t for t in expr.args if t in fresh and t not in keep and t not in later), None) \
            if isinstance(expr, sympy.Add) else None
        if a is not None and shapes.get(a.name) is not None and shape_of(expr, shapes) == tuple(shapes[a.name]):
            expr = InPlaceAdd(a, expr - a)
        out.append((symbol, expr))
    return out


class GeluTanh(sympy.Function):
    """:math:`u(1 + \\tanh(\\sqrt{2/\\pi}(u + 0.044715u^3)))/2`, GELU's tanh form, printed as
    ``F.gelu(u, approximate="tanh")`` (its constants are exactly these)."""


class GeluTanhBackward(sympy.Function):
    """``g`` times the derivative of :class:`GeluTanh` at ``u``, printed as torch's kernel
    ``gelu_backward(g, u, approximate="tanh")`` (differentiable twice)."""


def _small(expr: sympy.Expr) -> bool:
    """Whether a statement is worth a symbolic match: elementwise and of a few dozen operations
    (``expand`` and ``cancel`` of a large one could take long, and no kernel is that large)."""
    return not expr.atoms(ops.ArrayOp) and sympy.count_ops(expr) <= 80


def _gelu_tanh(u: sympy.Expr) -> sympy.Expr:
    return u * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (u + sympy.Rational(44715, 10**6) * u**3))) / 2


def gelu_kernels(pairs: list[tuple[sympy.Symbol, sympy.Expr]]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """Statements equal to GELU's tanh form of a name (``expand`` of the difference is 0)
    as :class:`GeluTanh`, and statements equal to ``g`` times its derivative (``g`` left
    without ``tanh`` by cancelling, recomputed helpers inlined first) as
    :class:`GeluTanhBackward` (:func:`kernels` then drops the helpers no longer read)."""
    definitions = {s: e for s, e in pairs}
    out = []
    for symbol, expr in pairs:
        inlined = expr.xreplace({s: e for s, e in definitions.items() if s != symbol}) if expr.has(sympy.tanh) else expr
        if expr.has(sympy.tanh) and _small(inlined):
            for u in sorted(inlined.free_symbols, key=str):
                if sympy.expand(inlined - _gelu_tanh(u)) == 0:
                    expr = GeluTanh(u)
                    break
                g = sympy.cancel(sympy.expand(inlined / sympy.diff(_gelu_tanh(u), u)))
                if not g.has(sympy.tanh) and g != 0:
                    expr = GeluTanhBackward(g, u)
                    break
        out.append((symbol, expr))
    return out


class Mish(sympy.Function):
    """:math:`u\\tanh(\\log(1 + e^u))`, printed as ``F.mish(u)``: one pass, where the composed
    form is three (softplus, tanh, a product)."""


class MishBackward(sympy.Function):
    """``g`` times the derivative of :class:`Mish` at ``u``,
    :math:`g(\\tanh s + u\\sigma(u)(1 - \\tanh^2 s))` with :math:`s = \\log(1 + e^u)`,
    printed as torch's one-pass kernel ``mish_backward(g, u)`` where the formula is six
    passes; that kernel has no derivative, so under ``create_graph=True`` the formula is
    printed too (as :class:`SiluBackward`)."""


def _mish(u: sympy.Expr) -> sympy.Expr:
    return u * sympy.tanh(sympy.log(1 + sympy.exp(u)))


def mish_kernels(pairs: list[tuple[sympy.Symbol, sympy.Expr]]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """Statements equal to mish of a name (``expand`` of the difference is 0) as
    :class:`Mish`, and statements equal to ``g`` times its derivative (``g`` left without
    ``tanh``, ``log`` or ``exp`` by cancelling) as :class:`MishBackward`."""
    out = []
    for symbol, expr in pairs:
        plain = expr.replace(softplus, lambda u: sympy.log(1 + sympy.exp(u)))
        if plain.has(sympy.tanh) and plain.has(sympy.log) and _small(plain):
            for u in sorted(plain.free_symbols - {DOUT}, key=str):
                if sympy.expand(plain - _mish(u)) == 0:
                    expr = Mish(u)
                    break
                g = sympy.cancel(sympy.expand(plain / sympy.diff(_mish(u), u)))
                if not g.has(sympy.tanh, sympy.log, sympy.exp) and g != 0:
                    expr = MishBackward(g, u)
                    break
        out.append((symbol, expr))
    return out


def drop_unread(pairs: list[tuple[sympy.Symbol, sympy.Expr]], helpers: set) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """The pairs without those ``helpers`` that no statement reads any more."""
    read = set().union(*(e.free_symbols for _, e in pairs)) if pairs else set()
    return [(s, e) for s, e in pairs if s not in helpers or s in read]


def kernels(pairs: list[tuple[sympy.Symbol, sympy.Expr]], helpers: set | None = None) -> list:
    """The statements as torch's fused kernels of the same formulas (SiLU's, GELU's tanh
    form); ``helpers``, the backward's recomputed values, are dropped where no statement
    reads them any more (None: the forward, every statement kept)."""
    out = softplus_kernels(gelu_kernels(silu_kernels(mish_kernels(pairs))))
    return softmax_again(relu_masks(out)) if helpers is None else drop_unread(out, helpers)


def silu_kernels(pairs: list[tuple[sympy.Symbol, sympy.Expr]]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """Backward statements equal to ``g*sigma(u)*(1 + u*(1 - sigma(u)))`` (swish's, SiLU's)
    as :class:`SiluBackward` ``(g, u)``, proved by cancelling the formula out (``g`` left
    without ``exp``)."""
    definitions = {s: e for s, e in pairs if _is_logistic(e)}
    out = []
    for symbol, expr in pairs:
        inlined = expr.xreplace(definitions) if definitions else expr
        for logistic in (e for e in inlined.atoms(sympy.Pow) if _is_logistic(e) and _small(inlined)):
            (power,) = [a for a in logistic.base.args if isinstance(a, sympy.exp)]
            u = -power.args[0]
            g = sympy.cancel(sympy.expand(inlined / (logistic * (1 + u * (1 - logistic)))))
            if not g.has(sympy.exp) and g != 0:  # the whole formula, not a quotient still holding a logistic
                expr = SiluBackward(g, u)
                break
        out.append((symbol, expr))
    return out


def _indicator(e: sympy.Basic) -> sympy.Basic | None:
    """The condition ``c`` of the indicator ``Piecewise((1, c), (0, True))``, else None."""
    if isinstance(e, sympy.Piecewise) and len(e.args) == 2 and e.args[0][0] == 1 and e.args[1] == (0, True):
        return e.args[0][1]
    return None


def _masked_product(e: sympy.Mul) -> tuple[sympy.Expr, sympy.Basic] | None:
    """``g*[c]`` (one indicator, ``g`` reading ``dout``, so a tensor) as ``(g, c)``: the
    product is ``where(c, g, 0)``, which torch's ``threshold_backward(g, m, 0)`` computes
    in one pass from the mask ``m`` viewed as ``uint8`` (0 or 1: ``g`` where ``m > 0``, else 0),
    where ``g*mask`` converts each boolean to a float first (about 1.5x the time; a ``bool``
    mask in ``threshold_backward`` takes that conversion's slow path too). None otherwise."""
    found = [(f, c) for f in e.args if (c := _indicator(f)) is not None]
    if len(found) != 1:
        return None
    (factor, condition), = found
    rest = sympy.Mul(*[f for f in e.args if f is not factor])
    return (rest, condition) if DOUT in rest.free_symbols else None


def _fused_product(e: sympy.Mul) -> tuple[str, sympy.Expr, sympy.Symbol] | None:
    """``g*v*(1 - v)`` as ``("sigmoid_backward", g, v)``, ``g*(1 - v**2)`` as
    ``("tanh_backward", g, v)``: torch's one-pass kernels of exactly these products (any
    tensors ``g``, ``v``, broadcast as ``*`` does, differentiable twice); None otherwise."""
    coeff, factors = e.as_coeff_mul()
    for form in (f for f in factors if isinstance(f, sympy.Add)):
        v = 1 - form
        if isinstance(v, sympy.Symbol) and v in factors:
            kernel, used = "sigmoid_backward", (v, form)
        elif isinstance(v, sympy.Pow) and v.exp == 2 and isinstance(v.base, sympy.Symbol):
            kernel, used, v = "tanh_backward", (form,), v.base
        else:
            continue
        rest = list(factors)
        for f in used:
            rest.remove(f)
        grad = coeff * sympy.Mul(*rest)
        if grad.free_symbols:
            return kernel, grad, v
    return None


# -- shapes: fewer passes over the large arrays of array layers ---------------------------------
Shapes = dict  # a name -> its symbolic shape (() for sizes and numbers)


def shape_of(expr: sympy.Basic, shapes: Shapes) -> tuple | None:
    """The shape of ``expr`` from the shapes of its names; None where a name's shape is
    unknown (a common subexpression's ``e0``) or the expression is boolean (a mask)."""
    if shapes is None or expr.atoms(sympy.Piecewise, sympy.core.relational.Relational):
        return None
    names = expr.free_symbols
    if any(s.name not in shapes for s in names):
        return None
    try:
        return tuple(ops.shape_of(expr, {s: shapes[s.name] for s in names}))
    except Exception:  # noqa: BLE001 - a shape rule that does not apply: leave the expression as it is
        return None


def smaller(shape: tuple, full: tuple) -> bool:
    """Whether ``shape`` broadcasts to ``full`` with fewer elements (``(N, 1)`` in ``(N, D)``)."""
    if len(shape) > len(full):
        return False
    offset = len(full) - len(shape)
    if any(s != full[offset + k] and s != 1 for k, s in enumerate(shape)):
        return False
    return len(shape) < len(full) or any(s == 1 and f != 1 for s, f in zip(shape, full[offset:]))


def layer_shapes(derivation: Derivation) -> Shapes | None:
    """Shapes of every name of an array layer's forward and backward (None for an
    elementwise layer: all its arrays have one shape)."""
    spec = derivation.spec
    if not spec.is_array:
        return None
    shapes = {s.name: tuple(sh) for s, sh in spec.shapes.items()}
    shapes.update({d.name: () for d in spec.dims})
    shapes["dout"] = shapes[spec.output.name]
    pairs = [*scaffold.forward_pairs(derivation),  # with the names of shared atoms (logp = log_softmax(a))
             *((c.symbol, c.expr) for c in (*derivation.cache, *derivation.recompute)), *derivation.steps]
    for symbol, expr in pairs:
        found = shape_of(expr, shapes)
        if found is not None and symbol.name not in shapes:
            shapes[symbol.name] = found
    return shapes


class TorchPrinter(NumpyLayerPrinter):
    """Prints expressions of a derivation as torch operations (``torch.exp``, ``dim=``);
    the logistic function as ``torch.sigmoid``, and the products of the sigmoid's and
    tanh's derivatives as torch's fused kernels (:func:`_fused_product`).

    With ``in_place=True`` (an elementwise layer of one input, where every array has the
    input's shape) a product or sum whose first operand is a temporary the expression made
    itself continues in that temporary's memory: ``(1 + x - t*x).mul_(dout)``, not
    ``(1 + x - t*x)*dout`` (one array allocated where there were two); names of the
    derivation (``y``, ``t``) are never written to, nor the result of a function
    (``torch.tanh(u)``): autograd keeps it for a double backward, which a ``mul_`` on it
    would make raise.

    With ``shapes`` (an array layer's, :func:`layer_shapes`) every product and sum over its
    large arrays makes fewer passes: a factor constant along a sum's axes moves out of it
    (:math:`\\sum_j s_i a_{ij} = s_i \\sum_j a_{ij}`), a product's smaller factors (numbers,
    sizes, ``(N, 1)`` arrays) are multiplied together first, and ``rest + a*b`` of tensors is
    ``torch.addcmul(rest, a, b)``.  LayerNorm's forward + backward went from 4.0-4.5x
    ``F.layer_norm``'s time to about 3x (``benchmarks/RESULTS.md``).
    """

    constants = "math"

    def __init__(self, names=None, masks=(), in_place: bool = False, shapes: Shapes | None = None,
                 recorded: bool = False):
        super().__init__(names, masks)
        self.in_place = in_place
        self.recorded = recorded
        self.shapes = shapes

    def _pull_out_of_sums(self, expr):
        """Factors constant along a sum's axes out of it (:func:`symbackprop.ops.factor_out_of_sum`),
        with the layer's shapes: one pass over the large array fewer for each."""
        def pull(e):
            return ops.factor_out_of_sum(e, lambda f: shape_of(f, self.shapes))

        return expr.replace(lambda e: isinstance(e, ops.ReduceSum), pull)

    def _grouped(self, e) -> str | None:
        """A product whose factors include two or more smaller than the result (numbers,
        sizes, ``(N, 1)`` arrays in an ``(N, D)`` product) with those multiplied first:
        ``xn*(2*dvar*std/D)``, one pass over ``xn`` where there were three."""
        full = shape_of(e, self.shapes)
        if full is None:
            return None
        small = [f for f in e.args if (sh := shape_of(f, self.shapes)) is not None and smaller(sh, full)]
        large = [f for f in e.args if f not in small]
        if len(small) < 2 or not large:
            return None
        prec = sympy.printing.precedence.PRECEDENCE["Mul"]
        return f"{self.parenthesize(sympy.Mul(*large), prec)}*({self._print(sympy.Mul(*small))})"

    def _temporary(self, e) -> bool:
        """Whether ``e`` prints as a float tensor of its own that autograd does not keep: a sum,
        a product or an integer power of arrays (a function's result, ``torch.tanh(u)``, is kept
        for its derivative; an indicator prints as its boolean mask)."""
        return (isinstance(e, (sympy.Add, sympy.Mul)) or isinstance(e, sympy.Pow) and e.exp.is_Integer) \
            and bool(e.free_symbols)

    def _multiply_add(self, e) -> str | None:
        """``rest + a*b`` of tensors as ``torch.addcmul(rest, a, b)``: one pass where the
        product's temporary made two (LayerNorm's ``gamma*xn + beta``); None where a term
        is a number or a shape is unknown."""
        if shape_of(e, self.shapes) is None:
            return None
        for term in e.args:
            negative = term.could_extract_minus_sign()
            product = -term if negative else term
            if not isinstance(product, sympy.Mul):
                continue
            factors = sorted(product.args, key=lambda f: -len(shape_of(f, self.shapes) or ()))
            a, b = factors[0], sympy.Mul(*factors[1:])
            rest = e - term
            if not all(shape_of(v, self.shapes) not in (None, ()) for v in (a, b, rest)):
                continue
            value = ", value=-1" if negative else ""
            return f"torch.addcmul({self._print(rest)}, {self._print(a)}, {self._print(b)}{value})"
        return None

    def _print_Add(self, e, order=None):
        if self.shapes and not self.in_place:
            fused = self._multiply_add(e)
            if fused is not None:
                return fused
        terms = list(e.args)
        first = next((t for t in terms if self._temporary(t) and not t.could_extract_minus_sign()), None)
        if not self.in_place or first is None:
            return super()._print_Add(e, order)
        text = f"({self._print(first)})"
        for t in (t for t in terms if t is not first):
            text += f".sub_({self._print(-t)})" if t.could_extract_minus_sign() else f".add_({self._print(t)})"
        return text

    def _print_Mul(self, e):
        masked = _masked_product(e)
        if masked is not None:
            g, condition = masked
            mask = self._print(condition) if condition.is_Symbol else f"({self._print(condition)})"
            return f"torch.ops.aten.threshold_backward({self._print(g)}, {mask}.view(torch.uint8), 0)"
        if len(e.args) == 2 and any(isinstance(f, Logistic) and f.args[0] == e.args[1 - k] for k, f in enumerate(e.args)):
            (u,) = [f.args[0] for f in e.args if isinstance(f, Logistic)]
            return f"torch.nn.functional.silu({self._print(u)})"  # u*sigmoid(u): one pass, not two
        fused = _fused_product(e)
        if fused is None or self._is_mask(fused[1]):
            return self._in_place_product(e) or (self.shapes and self._grouped(e)) or super()._print_Mul(e)
        kernel, grad, v = fused
        return f"torch.ops.aten.{kernel}({self._print(grad)}, {self._print(v)})"

    def doprint(self, expr, assign_to=None):  # noqa: D102 - see the class docstring
        expr = _logistic_powers(stable(expr))
        return super().doprint(self._pull_out_of_sums(expr) if self.shapes else expr, assign_to)

    def _print_Logistic(self, e):
        return f"torch.sigmoid({self._print(e.args[0])})"

    def _print_ReduceSum(self, e):
        return self._dot(e) or super()._print_ReduceSum(e)

    def _dot(self, e) -> str | None:
        """The sum of every entry of a product of two arrays of one shape as ``torch.dot`` of
        the two flattened: one pass and no temporary, where the product and the sum were two
        (the loss of softmax-with-loss, :math:`\\sum_{ij} t_{ij} \\log y_{ij}`); None otherwise."""
        body = e.args[0]
        if len(e.args[1]) or e.keepdims or not self.shapes or not isinstance(body, sympy.Mul) or len(body.args) != 2:
            return None
        a, b = body.args
        shape = shape_of(a, self.shapes)
        if not shape or shape != shape_of(b, self.shapes):
            return None
        return f"torch.dot({self._operand(a)}.reshape(-1), {self._operand(b)}.reshape(-1))"

    def _print_GeluTanh(self, e):
        return f'torch.nn.functional.gelu({self._print(e.args[0])}, approximate="tanh")'

    def _print_GeluTanhBackward(self, e):
        return f'torch.ops.aten.gelu_backward({self._print(e.args[0])}, {self._print(e.args[1])}, approximate="tanh")'

    def _print_NormRows(self, e):
        u, eps = e.args
        return f"torch.ops.aten.native_layer_norm({self._print(u)}, {self._print(u)}.shape[-1:], None, None, {float(eps)!r})"

    def _print_InPlaceDiv(self, e):
        return f"{self._print(e.args[0])}.div_({self._print(e.args[1])})"

    def _print_Deviation(self, e):
        kernel, u, eps = self._print(e.args[0]), self._print(e.args[1]), repr(float(e.args[2]))
        return (f"(1/{kernel}[2] if not torch.is_grad_enabled() else "
                f"torch.sqrt(torch.var_mean({u}, dim=-1, keepdim=True, correction=0)[0] + {eps}))")

    def _print_NormRowsAffine(self, e):
        u, w, b = (self._print(a) for a in e.args[:3])
        return f"torch.ops.aten.native_layer_norm({u}, {u}.shape[-1:], {w}, {b}, {float(e.args[3])!r})"

    def _print_NormRowsBackwardFromInput(self, e):
        g, u, std, w = (self._print(a) for a in e.args)
        return (f"torch.ops.aten.native_layer_norm_backward({g}, {u}, {u}.shape[-1:], "
                f"torch.mean({u}, dim=-1, keepdim=True), 1/{std}, {w}, {w}, [True, True, True])")

    def _print_Part(self, e):
        return f"{self._print(e.args[0])}[{int(e.args[1])}]"

    def _print_NormRowsBackward(self, e):
        g, xn, w, b, std = (self._print(a) for a in e.args)
        bias, mask = ("None", "[True, True, False]") if e.args[3] == 0 else (b, "[True, True, True]")
        return (f"torch.ops.aten.native_layer_norm_backward({g}, {xn}, {xn}.shape[-1:], torch.zeros_like({std}), "
                f"torch.ones_like({std}), {w}, {bias}, {mask})")

    def _print_SoftplusBackward(self, e):
        return f"torch.ops.aten.softplus_backward({self._print(e.args[0])}, {self._print(e.args[1])}, 1, 40.0)"

    def _print_SiluBackward(self, e):
        """torch's kernel, which has no derivative: under ``create_graph=True`` the formula itself."""
        g, u = e.args
        return self._kernel_or_formula("silu_backward", g, u, g * Logistic(u) * (1 + u * (1 - Logistic(u))))

    def _print_MishBackward(self, e):
        """The module's own ``mish_backward`` (:mod:`symbackprop.codegen.torch_cpu`: torch's
        kernel, or one ``exp`` on the CPU), the formula under ``create_graph=True``."""
        g, u = e.args
        t = sympy.tanh(softplus(u))
        return self._kernel_or_formula("mish_backward", g, u, g * (t + u * Logistic(u) * (1 - t**2)))

    def _print_Mish(self, e):
        """The module's own ``mish_forward`` (:mod:`symbackprop.codegen.torch_cpu`), which is
        ``F.mish`` wherever autograd records."""
        return f"mish_forward({self._print(e.args[0])})"

    def _kernel_or_formula(self, kernel: str, g, u, formula) -> str:
        """``kernel(g, u)`` (torch's ``torch.ops.aten.<kernel>``, or the module's own where
        :mod:`symbackprop.codegen.torch_cpu` defines one), which has no derivative, and under
        ``create_graph=True`` (a double backward) the formula it computes."""
        call = kernel if kernel in torch_cpu.HELPERS else f"torch.ops.aten.{kernel}"
        return (f"({call}({self._print(g)}, {self._print(u)}) if not torch.is_grad_enabled() "
                f"else {self._print(formula)})")

    def _np(self, name: str) -> str:
        spelled = TORCH_SPELLING.get(name, name)
        if spelled is None:
            raise GenerationError(f"torch has no function for '{name.removeprefix(SPECIAL)}': "
                                  "use --backend numpy for this declaration")
        return f"torch.{spelled}"

    def _in_place_product(self, e) -> str | None:
        """``(A).mul_(b).div_(c)``: the product continued in its first temporary factor's memory."""
        coeff, factors = e.as_coeff_mul()
        coeff *= sympy.Mul(*[f for f in factors if not f.free_symbols])  # sqrt(2/pi): one number
        factors = tuple(f for f in factors if f.free_symbols)
        first = next((f for f in factors if self._temporary(f) and not (isinstance(f, sympy.Pow) and f.exp < 0)), None)
        if not self.in_place or first is None or (coeff == 1 and len(factors) == 1):
            return None
        rest = sorted((f for f in factors if f is not first), key=self._is_mask)  # masks last
        text = f"({self._print(first)})"
        for f in rest:
            negative = isinstance(f, sympy.Pow) and f.exp.is_Integer and f.exp < 0
            text += f".div_({self._print(1 / f)})" if negative else f".mul_({self._print(f)})"
        return text if coeff == 1 else f"{text}.mul_({self._print(coeff)})"

    def _print_polygamma(self, e):
        n, x = e.args
        if n == 0:
            return f"torch.special.digamma({self._print(x)})"
        raise GenerationError("torch has no function for 'polygamma' accurate in float64 (torch.special.polygamma "
                              "errs by 4e-10 relative at x = 2): use --backend numpy for this declaration")

    def _print_softplus(self, e):
        # exact in float32 and float64 (log1p(exp(-40)) is below their precision at 40)
        return f"torch.nn.functional.softplus({self._print(e.args[0])}, threshold=40.0)"

    def _bound(self, e, side: str) -> str:
        """``Max(u, c)`` as ``torch.clamp_min(u, c)`` (a number is no tensor; one-sided, about
        0.7x the time of ``torch.clamp(u, min=c)``, measured), else ``torch.maximum``."""
        numbers = [a for a in e.args if a.is_Number]
        tensors = [a for a in e.args if not a.is_Number]
        if not tensors:
            return self._print(e)
        text = self._fold("torch.maximum" if side == "min" else "torch.minimum", tensors)
        for c in numbers:
            text = f"torch.clamp_{side}({text}, {self._print(c)})"
        return text

    def _print_InPlaceAdd(self, e):
        a, b = e.args
        if self.recorded:
            return self._print(a + b)
        if b.could_extract_minus_sign():
            return f"{self._print(a)}.sub_({self._print(-b)})"
        return f"{self._print(a)}.add_({self._print(b)})"

    def _print_NonZero(self, e):
        return f"{self._print(e.args[0])}.bool()"

    def _print_Max(self, e):
        return self._bound(e, "min")

    def _print_Min(self, e):
        return self._bound(e, "max")

    def _reduction(self, fn: str, e) -> str:
        name = {"max": "amax"}.get(fn, fn)
        keep = ", keepdim=True" if e.keepdims else ""
        axis = f", dim={self._axis(e.args[1])}" if len(e.args[1]) else ""
        return f"torch.{name}({self._print(e.args[0])}{axis}{keep})"

    def _print_LogSumExp(self, e):
        return f"torch.logsumexp({self._print(e.args[0])}, dim={self._axis(e.args[1])}, keepdim={e.keepdims})"

    def _print_Softmax(self, e):
        return f"torch.softmax({self._print(e.args[0])}, dim={int(e.args[1])})"

    def _print_LogSoftmax(self, e):
        return f"torch.log_softmax({self._print(e.args[0])}, dim={int(e.args[1])})"

    def _print_ExpandDims(self, e):
        text = self._print(e.args[0])
        for axis in sorted(int(a) for a in e.args[1]):
            text = f"torch.unsqueeze({text}, {axis})"
        return text

    def _spread(self, array: str, shape: str) -> str:
        return f"torch.broadcast_to({array}, {shape}).clone()"

    def _filled(self, shape: str, value) -> str:
        return f"torch.full({shape}, {self._print(sympy.Float(value))}, dtype=dout.dtype, device=dout.device)"


def _kernel_count(pairs: list) -> int:
    return sum(1 for _, e in kernels(pairs) if e.atoms(SoftplusBackward, SiluBackward, GeluTanhBackward))


def torch_cache(derivation: Derivation) -> Derivation:
    """The derivation with torch's choice of cache, where it differs from the cost model's.

    The cost model ranks forms by the bytes they keep, then by their arithmetic, which is
    what numpy pays; torch pays passes over memory, and one of its fused backward kernels
    is one pass however much arithmetic it does.  So where an elementwise layer of one
    input ``x`` caches a node's output ``y = f(x)`` (the same shape, the same bytes: the
    memory-first rule holds), and the backward written in ``x`` (``y`` replaced by
    ``f(x)``) has more statements proved equal to a torch kernel (:func:`kernels`) than the
    backward in ``y``, the op keeps ``x`` instead.  Softplus: ``dout*(1 - exp(-y))`` from
    the output is three passes (``expm1``, a negation, a product); ``dout*sigma(x)`` from
    the input is ``softplus_backward(dout, x, 1, 40)``, one.  Layer normalization keeps its
    input instead of ``xn`` where proved (:func:`symbackprop.codegen.torch_layer_norm.keep_input`).
    Everything else as derived.
    """
    if derivation.spec.is_array:
        return torch_layer_norm.keep_input(derivation, torch_layer_norm.find(scaffold.forward_pairs(derivation),
                                                                             derivation.spec))
    return input_cache(derivation)


def input_cache(derivation: Derivation) -> Derivation:
    """An elementwise layer of one input keeping ``x`` instead of its cached output where
    that is the same bytes and the backward in ``x`` has more statements proved equal to
    a torch kernel (:func:`kernels`): the torch backends' choice (:func:`torch_cache`),
    and the jax backend's too (a kernel's formula is one known function of ``x``)."""
    spec = derivation.spec
    if spec.is_array or len(spec.inputs) != 1 or spec.params or spec.constants or derivation.recompute:
        return derivation
    (x,) = spec.inputs
    graph = dict(spec.graph)
    if [c.symbol for c in derivation.cache] == [x] or any(c.mask for c in derivation.cache):
        return derivation
    definitions = {}
    for c in derivation.cache:
        if c.symbol not in graph:
            return derivation
        definitions[c.symbol] = c.expr
    steps = [(s, e.xreplace(definitions)) for s, e in derivation.steps]
    if any(e.free_symbols - {x, DOUT} for _, e in steps) or _kernel_count(steps) <= _kernel_count(derivation.steps):
        return derivation
    backward = {k: v.xreplace(definitions) for k, v in derivation.backward.items()}
    kept = ", ".join(derivation.cache_names)
    note = (f"the torch and jax backends keep {x.name}, not {kept} (the same bytes): the backward from "
            f"{x.name} is one of torch's fused kernels, one known function in jax")
    return dataclasses.replace(derivation, cache=[Cached(x, x)], steps=steps, backward=backward,
                               notes=[*derivation.notes, note])


def op(derivation: Derivation) -> frameworks.Op:
    """The layer's op with torch statements (raises GenerationError for what torch cannot do)."""
    frameworks.check_names(derivation, RESERVED, "torch")
    derivation = torch_cache(derivation)
    spec = derivation.spec
    in_place = not spec.is_array and len(spec.inputs) == 1 and not spec.params and not spec.constants
    shapes = layer_shapes(derivation)
    match = torch_layer_norm.find(scaffold.forward_pairs(derivation), spec) if spec.is_array else None
    if match is not None:
        cached = {c.symbol for c in derivation.cache}
        match.keeps_input = match.out == spec.output and match.u in cached and match.xn not in cached
    printer = functools.partial(TorchPrinter, in_place=in_place, shapes=shapes)
    xn_pairs = torch_layer_norm.recomputed_xn(scaffold.forward_pairs(derivation), match) if match else []
    return frameworks.build(derivation, printer, EYE, "torch.zeros_like",
                            kernels=layer_kernels(derivation, shapes, match, xn_pairs),
                            recorded_printer=functools.partial(printer, recorded=True))


def layer_kernels(derivation: Derivation, shapes: Shapes | None, match, xn_pairs: list):
    """:func:`kernels` for this derivation, with the forward's sums continued in place
    (:func:`in_place_sums`) and layer normalization's two kernels where proved (``match``,
    :mod:`symbackprop.codegen.torch_layer_norm`; the backward's kernel only where autograd
    records nothing, the derived statements under ``create_graph=True``, after ``xn_pairs``
    recompute ``xn`` where the op keeps the input instead)."""
    spec = derivation.spec
    keep = {*(c.symbol for c in derivation.cache), spec.output, *spec.outputs}
    taken = set(scaffold.names_of(derivation)) | {s.name for s, _ in derivation.steps} | set(RESERVED)

    def fresh(stem: str) -> sympy.Symbol:
        name = next(f"{stem}{k or ''}" for k in range(len(taken) + 1) if f"{stem}{k or ''}" not in taken)
        taken.add(name)
        return ops.ArrayVar(name)

    def forward(pairs):
        out = kernels(pairs)
        out = torch_layer_norm.forward(out, match, keep, fresh) if match is not None else out
        return in_place_sums(out, keep, shapes)

    def with_layer_norm(pairs, helpers=None):
        if helpers is None:
            return forward(pairs)
        out = kernels(pairs, helpers)
        if match is None:
            return out
        fast = torch_layer_norm.backward(pairs, match, spec, shapes or {}, fresh, derivation.dout)
        if fast is None:
            if match.keeps_input:
                raise GenerationError("layer normalization's backward kernel did not match after its forward did")
            return out
        formula = [*xn_pairs, *out] if match.keeps_input else out
        return frameworks.Branches("not torch.is_grad_enabled()", fast, formula)

    return with_layer_norm


def module(derivation: Derivation, name: str | None = None) -> str:
    """The source of a module defining ``<Name>Function`` (a ``torch.autograd.Function``)
    and ``<Name>`` (an ``nn.Module`` calling it).

    Parameters
    ----------
    derivation : Derivation
    name : str, optional
        Class name; default from the declaration's name.
    """
    derivation = torch_cache(derivation)
    the_op = op(derivation)
    cls = scaffold.class_name(name or derivation.spec.name)
    doc = scaffold._docstring(derivation)
    head = ['"""Generated by symbackprop: do not edit; regenerate from the declaration."""',
            "import math", *(["import weakref"] if the_op.intermediate else []), "", "import torch", "", ""]
    body = _function(the_op, f"{cls}Function", doc) + ["", ""] + _module_class(the_op, cls, doc)
    return "\n".join([*head, *torch_cpu.definitions(body), *body]) + "\n"


def _function(the_op: frameworks.Op, fname: str, doc: list[str]) -> list[str]:
    arguments = ", ".join(["ctx", *the_op.arguments])
    held = [f"ctx.arguments = {fname}.weakly({', '.join(the_op.arguments)})  # read by a double backward only"] \
        if the_op.intermediate else []
    forward = [*the_op.forward, f"ctx.save_for_backward({', '.join(the_op.saved)})",
               *(f"ctx.{d} = {d}" for d in the_op.dims), *held, f"return {the_op.output}"]
    unpack = [f"{', '.join(the_op.saved)}, = ctx.saved_tensors"] if the_op.saved else []
    again = recompute_lines(the_op, f"{fname}.intermediates(*{fname}.arguments(ctx))") if the_op.intermediate else []
    backward = [*unpack, *(f"{d} = ctx.{d}" for d in the_op.dims), *again, *the_op.backward,
                f"return {', '.join(the_op.gradients)}"]
    lines = [f"class {fname}(torch.autograd.Function):", *frameworks.indented(doc, 1), "",
             f"{INDENT}@staticmethod", f"{INDENT}def forward({arguments}):", *frameworks.indented(forward, 2), "",
             f"{INDENT}@staticmethod", f"{INDENT}def backward(ctx, dout):", *frameworks.indented(backward, 2)]
    if the_op.intermediate:
        lines += _double_backward_methods(the_op, fname)
    return lines


def recompute_lines(the_op: frameworks.Op, call: str) -> list[str]:
    """Under ``create_graph=True``, the cached intermediates replaced by ``call``'s: the same
    values, recomputed from the arguments with their graph, so that torch differentiates the
    backward through them (a second derivative); otherwise the saved ones, at no cost."""
    return ["if torch.is_grad_enabled():  # create_graph=True: the intermediates again, with their graph",
            f"{INDENT}{', '.join(the_op.kept)}, = {call}"]


def held_arguments(the_op: frameworks.Op, owner: str) -> tuple[list[str], list[str]]:
    """Bodies of ``weakly(*arguments)`` and ``arguments(ctx)``: the arguments held by weak
    reference (nothing kept alive for a double backward that may never come) with their
    version counters, and given back, or an error naming the one freed or modified in
    place since the forward."""
    names = ", ".join(f'"{a}"' for a in the_op.arguments)
    weakly = ["return [(weakref.ref(a), a._version) if isinstance(a, torch.Tensor) and not a.is_inference()",
              f"{INDENT}else (a, None) for a in arguments]  # a number, or an inference tensor (no version): itself"]
    message = (f"{owner}: a double backward recomputes the cached intermediates from the argument "
               "'{name}', which was freed or modified in place since the forward: keep it unchanged until then")
    back = ["found = []",
            f"for name, (held, version) in zip(({names},), ctx.arguments):",
            f"{INDENT}a = held() if version is not None else held",
            f"{INDENT}if a is None or version is not None and a._version != version:",
            f'{INDENT * 2}raise RuntimeError(f"{message}")',
            f"{INDENT}found.append(a)",
            "return found"]
    return weakly, back


def until_kept(the_op: frameworks.Op, lines: list[str]) -> list[str]:
    """The forward's lines up to the last that computes a kept array (the rest is not needed again)."""
    last = max(k for k, line in enumerate(lines) if line.partition(" = ")[0] in the_op.kept)
    return lines[:last + 1]


def _double_backward_methods(the_op: frameworks.Op, fname: str) -> list[str]:
    """``weakly``, ``arguments`` and ``intermediates``: what a double backward needs."""
    weakly, back = held_arguments(the_op, fname)
    again = [*until_kept(the_op, the_op.recorded_forward), f"return {', '.join(the_op.kept)},"]
    kept = ", ".join(the_op.kept)
    return ["", f"{INDENT}@staticmethod", f"{INDENT}def weakly(*arguments):",
            f'{INDENT * 2}"""The arguments by weak reference (nothing kept alive), with their version counters."""',
            *frameworks.indented(weakly, 2), "",
            f"{INDENT}@staticmethod", f"{INDENT}def arguments(ctx):",
            f'{INDENT * 2}"""The forward\'s arguments again, for a double backward."""',
            *frameworks.indented(back, 2), "",
            f"{INDENT}@staticmethod", f"{INDENT}def intermediates({', '.join(the_op.arguments)}):",
            f'{INDENT * 2}"""The cached intermediates ({kept}) recomputed with the forward\'s torch operations, '
            'their graph to the arguments recorded."""',
            *frameworks.indented(again, 2)]


def _module_class(the_op: frameworks.Op, cls: str, doc: list[str]) -> list[str]:
    init = ["super().__init__()",
            *(f"self.{p} = torch.nn.Parameter(torch.as_tensor({p}))" for p in the_op.params)]
    call = ", ".join([*the_op.inputs, *(f"self.{p}" for p in the_op.params), *the_op.constants])
    return [f"class {cls}(torch.nn.Module):", *frameworks.indented(doc, 1), "",
            f"{INDENT}function = {cls}Function", "",
            f"{INDENT}def __init__({', '.join(['self', *the_op.params])}):", *frameworks.indented(init, 2), "",
            f"{INDENT}def forward({', '.join(['self', *the_op.inputs, *the_op.constants])}):",
            f"{INDENT * 2}return {cls}Function.apply({call})"]


__all__ = ["RESERVED", "torch_cache", "TORCH_SPELLING", "TorchPrinter", "held_arguments", "module", "op", "recompute_lines", "until_kept"]
