r"""Layer normalization's derived forward and backward as torch's two kernels, where proved.

A layer whose forward computes, from an input ``u`` of shape ``(..., D)``,

.. math:: \hat{u} = \frac{u - \bar{u}}{s},\quad s = \sqrt{\overline{(u - \bar{u})^2} + \epsilon}
          \quad\text{(means over the last axis, kept)}

(:func:`find`: each statement inlined, the difference from the formula expanded to 0,
never read off the layer's name) has its statements replaced by torch's kernels:

- Where its output is proved to be :math:`w\hat{u} + b` (parameters of shape ``(D,)``) and the
  derivation caches ``xn`` and ``std``, the op keeps ``u`` instead of ``xn`` (the same bytes:
  the memory-first rule holds; :func:`keep_input`).  The forward is one
  ``native_layer_norm(u, u.shape[-1:], w, b, eps)`` (``std`` is ``1/rstd``, its output), the
  backward one ``native_layer_norm_backward(dout, u, ..., mean(u), 1/std, w, w)`` (the row
  means recomputed: one read of ``u``), PyTorch's own layer norm.
- Otherwise ``xn`` and ``std`` are read off ``native_layer_norm(u, u.shape[-1:], None, None,
  eps)``, and the backward, where proved, is ``native_layer_norm_backward(dout, xn, ..., 0, 1,
  w, None)`` divided by ``std`` in place: the kernel computes the bracket below from its input
  ``xn`` with the mean 0 and the reciprocal deviation 1 (:math:`\hat{u} = (xn - 0)\cdot 1`).

The backward's proof (:func:`backward`): the derived gradient of ``u``, inlined in the cached
:math:`\hat{u}` and :math:`s`, equals

.. math:: \frac{1}{s}\Big(g - \frac{1}{D}\sum g - \hat{u}\,\frac{1}{D}\sum g\,\hat{u}\Big),
          \quad g = \text{dout}\cdot w

(the difference expanded, sums split by linearity and factors constant along a sum moved out,
:func:`symbackprop.ops.split_sums`, is 0 once :math:`\sum \hat{u} = 0` over a row, which holds
for the template's :math:`\hat{u}`: a row minus its mean, over a number per row,
:math:`\sum_j (u_j - \bar{u})/s = (D\bar{u} - D\bar{u})/s`; the derived formula keeps a term
in :math:`\sum \hat{u}`, zero up to rounding, the kernel does not), and the gradients of
:math:`w` and :math:`b` are :math:`\sum_{\text{rows}} \text{dout}\cdot\hat{u}` and
:math:`\sum_{\text{rows}} \text{dout}`.  That bracket is what the kernel computes: its
``rstd*dy*w + b*x + c`` with ``b = (db*mean - ds)*rstd**3/D``, ``c = -b*mean - db*rstd/D``
(``ds``, ``db`` the row sums of ``dy*w*x`` and ``dy*w``) is the bracket with
:math:`\hat{u} = (x - \bar{x})\,\text{rstd}`.

Under ``create_graph=True`` the backward runs the derived statements
(:class:`symbackprop.codegen.frameworks.Branches`; ``xn`` recomputed from ``u`` and ``std``
where the op keeps ``u``): the kernel's own derivative assumes its mean and deviation are
its input's, which 0 and 1 are not, and torch marks the forward kernel's ``rstd`` not
differentiable, so ``std`` is ``sqrt(var_mean(u) + eps)`` wherever autograd records a graph.
"""
from __future__ import annotations

import dataclasses

import sympy

from .. import ops


class NormRows(sympy.Function):
    """``native_layer_norm(u, u.shape[-1:], None, None, eps)``: the tuple (normalized, mean, 1/deviation)."""

    nargs = 2


class Deviation(sympy.Function):
    """``(kernel, u, eps)``: :math:`s` as ``1/kernel[2]`` (the kernel's reciprocal deviation)
    where autograd records nothing; under ``create_graph=True`` (the double backward's
    recomputation) ``sqrt(var + eps)`` with ``torch.var_mean`` (population variance), since
    torch marks the kernel's deviation not differentiable."""

    nargs = 3


class Part(sympy.Function):
    """``t[k]``: one output of a kernel returning a tuple."""

    nargs = 2


class InPlaceDiv(sympy.Function):
    """``a.div_(b)``: ``a/b`` in the memory of ``a``, a temporary of the backward's own
    (a kernel's output that autograd does not keep: no graph is recorded there)."""

    nargs = 2


class NormRowsAffine(sympy.Function):
    """``native_layer_norm(u, u.shape[-1:], w, b, eps)``: the tuple (``w*xn + b``, mean, 1/deviation)."""

    nargs = 4


class NormRowsBackwardFromInput(sympy.Function):
    """``native_layer_norm_backward(g, u, u.shape[-1:], mean(u), 1/std, w, w, [True]*3)``:
    the kernel's own reading of the input, with its row means recomputed.  The bias slot
    takes ``w``: the kernel reads the bias for nothing but the shape and dtype of its
    gradient, which are ``w``'s (both ``(D,)``; measured: a bias of NaNs gives the same
    three gradients)."""

    nargs = 4


class NormRowsBackward(sympy.Function):
    """``native_layer_norm_backward(g, xn, xn.shape[-1:], zeros, ones, w, b, [True]*3)``
    (``zeros``, ``ones`` shaped like the deviation ``std``); ``b`` None: no bias."""

    nargs = 5


def _inline(expr: sympy.Basic, definitions: dict) -> sympy.Basic:
    for _ in range(len(definitions) + 1):
        new = expr.xreplace(definitions)
        if new == expr:
            return expr
        expr = new
    return expr


def _mean(a, axis: int):
    return ops.reduce_op("mean", a, axis, True)


def normalized(u, eps, axis: int):
    centred = u - _mean(u, axis)
    return centred / sympy.sqrt(_mean(centred**2, axis) + eps)


def deviation(u, eps, axis: int):
    return sympy.sqrt(_mean((u - _mean(u, axis)) ** 2, axis) + eps)


def _epsilons(expr: sympy.Basic) -> set:
    """Positive numbers added under a square root of ``expr``: the candidates for epsilon."""
    return {t for p in expr.atoms(sympy.Pow) if p.exp in (sympy.S.Half, -sympy.S.Half) and isinstance(p.base, sympy.Add)
            for t in p.base.args if t.is_Number and t.is_positive}


def _zero(e: sympy.Basic) -> bool:
    return sympy.expand(e) == 0


class Match:
    """The proved match of one layer: the input ``u``, its last axis, epsilon, and the
    symbols of the normalized input and deviation in the forward."""

    def __init__(self, u, axis, eps, xn, std):
        self.u, self.axis, self.eps, self.xn, self.std = u, axis, eps, xn, std
        self.out = self.w = self.b = None  # out = w*xn + b, where proved
        self.keeps_input = False  # the op keeps u instead of xn (:func:`keep_input`)



def find(pairs: list, spec) -> Match | None:
    """The statements of ``pairs`` (the forward) proved to compute ``u``'s normalization and deviation."""
    if not spec.is_array:
        return None
    definitions = dict(pairs)
    for u in spec.inputs:
        shape = spec.shapes.get(u, ())
        if len(shape) < 2:
            continue
        axis = len(shape) - 1
        xn = std = eps = None
        for symbol, expr in pairs:
            inlined = _inline(expr, {s: e for s, e in definitions.items() if s != symbol})
            if u not in inlined.free_symbols or inlined.free_symbols - {u}:
                continue
            for c in sorted(_epsilons(inlined), key=float):
                if xn is None and _zero(inlined - normalized(u, c, axis)):
                    xn, eps = symbol, c
                elif std is None and _zero(inlined - deviation(u, c, axis)):
                    std, eps = symbol, eps if eps is not None else c
        if xn is not None and std is not None and _zero(_inline(std, definitions) - deviation(u, eps, axis)):
            match = Match(u, axis, eps, xn, std)
            _affine(match, pairs, spec)
            return match
    return None


def _affine(match: Match, pairs: list, spec) -> None:
    """The statement proved to compute ``w*xn + b`` for parameters ``w``, ``b`` of shape ``(D,)``, if any."""
    definitions = dict(pairs)
    size = spec.shapes[match.u][match.axis]
    vectors = [p for p in spec.params if tuple(spec.shapes.get(p, ())) == (size,)]
    template = normalized(match.u, match.eps, match.axis)
    for symbol, expr in pairs:
        inlined = _inline(expr, {s: e for s, e in definitions.items() if s != symbol})
        for w in vectors:
            for b in (b for b in vectors if b != w):
                if inlined.free_symbols == {match.u, w, b} and _zero(inlined - (w * template + b)):
                    match.out, match.w, match.b = symbol, w, b
                    return


def keep_input(derivation, match: Match | None):
    """The derivation keeping the input ``u`` where it keeps ``xn`` (the same bytes: the
    memory-first rule holds), when the layer's output is ``w*xn + b``: the forward is then
    one ``native_layer_norm(u, ..., w, b, eps)`` (``xn`` is never stored) and the backward one
    ``native_layer_norm_backward`` reading ``u`` (its row means recomputed: one read of ``u``),
    as PyTorch's own layer norm, where keeping ``xn`` costs a pass more in each (the affine
    map after the kernel, a division after the backward's).  Unchanged otherwise."""
    from ..derivation.model import Cached

    if match is None or match.out != derivation.spec.output:
        return derivation
    if {c.symbol for c in derivation.cache} != {match.xn, match.std}:
        return derivation
    cache = [Cached(match.u, match.u) if c.symbol == match.xn else c for c in derivation.cache]
    note = (f"the torch backends keep {match.u.name}, not {match.xn.name} (the same bytes): torch's layer-norm "
            f"kernels read {match.u.name}")
    return dataclasses.replace(derivation, cache=cache, notes=[*derivation.notes, note])


def recomputed_xn(pairs: list, match: Match) -> list:
    """The forward's statements computing ``xn`` from ``u`` and the kept ``std`` (for the
    derived backward under ``create_graph=True``, when the op keeps ``u``)."""
    definitions = dict(pairs)
    needed, order = {match.xn}, []
    for symbol, expr in reversed(pairs):
        if symbol in needed and symbol != match.std:
            order.insert(0, (symbol, expr))
            needed |= expr.free_symbols
    return [(s, e) for s, e in order if s in definitions]


def forward(pairs: list, match: Match, keep: set, fresh) -> list:
    """The forward with ``xn`` and ``std`` read off one ``native_layer_norm``, and the
    statements nothing reads any more (not in ``keep``: the cache and the output) dropped."""
    kernel = fresh("ln")
    out, placed = [], False
    if match.keeps_input:
        for symbol, expr in pairs:
            if symbol in (match.std, match.out) and not placed:
                out.append((kernel, NormRowsAffine(match.u, match.w, match.b, match.eps)))
                placed = True
            out.append((symbol, Part(kernel, 0) if symbol == match.out else
                         Deviation(kernel, match.u, match.eps) if symbol == match.std else expr))
        pairs = []
    for symbol, expr in pairs:
        if symbol in (match.xn, match.std):
            if not placed:
                out.append((kernel, NormRows(match.u, match.eps)))
                placed = True
            out.append((symbol, Part(kernel, 0) if symbol == match.xn else Deviation(kernel, match.u, match.eps)))
        else:
            out.append((symbol, expr))
    while True:  # drop what only fed the replaced statements
        read = set().union(*(e.free_symbols for _, e in out))
        dropped = [(s, e) for s, e in out if s in read or s in keep or s == kernel]
        if len(dropped) == len(out):
            return out
        out = dropped


def _canonical(expr: sympy.Basic, shapes: dict) -> sympy.Basic:
    """Expanded, sums split by linearity and constant factors moved out, to a fixed point."""
    for _ in range(8):
        new = sympy.expand(ops.split_sums(sympy.expand(expr), shapes))
        if new == expr:
            break
        expr = new
    return expr


def backward(pairs: list, match: Match, spec, shapes: dict, fresh, dout: sympy.Symbol):
    """The backward's statements as ``native_layer_norm_backward`` where proved equal to
    the derived ones (None otherwise): ``[(kernel, NormRowsBackward(...)), (du, ...), (dw, ...), (db, ...)]``."""
    definitions = dict(pairs)
    grads = {s.name: s for s, _ in pairs}
    du = grads.get(f"d{match.u.name}")
    if du is None:
        return None
    xn, std = match.xn, match.std
    size = spec.shapes[match.u][match.axis]
    symbols = {s for _, e in pairs for s in e.free_symbols} | {xn, std, dout}
    by_name = {s.name: s for s in symbols}
    known = {by_name[n]: sh for n, sh in shapes.items() if n in by_name}
    if xn not in known or std not in known:
        return None
    rows = tuple(range(match.axis))
    inlined = {s: _canonical(_inline(definitions[s], definitions), known) for s in definitions}
    row_sum = ops.reduce_op("sum", xn, match.axis, True)
    for w in spec.params:
        if tuple(spec.shapes.get(w, ())) != (size,):
            continue
        g = dout * w
        bracket = g - ops.reduce_op("sum", g, match.axis, True) / size \
            - xn * ops.reduce_op("sum", g * xn, match.axis, True) / size
        difference = _canonical(inlined[du] - bracket / std, known)
        if not _zero(difference.xreplace({row_sum: 0})):
            continue
        dw = grads.get(f"d{w.name}")
        if dw is None or not _zero(_canonical(inlined[dw] - ops.reduce_op("sum", dout * xn, rows, False), known)):
            continue
        # a bias's gradient (sum(dout) over the rows) stays the derived statement: the kernel's
        # would need the bias saved only to read its shape
        others = set(grads.values()) - {du, dw}
        arguments = {a.name for a in (*spec.inputs, *spec.params)}
        kept = [(s, definitions[s]) for s in others if s.name[1:] in arguments]
        if any(definitions[s].free_symbols - {dout} for s, _ in kept):
            return None  # another argument's gradient reads more than dout: not this layer
        kernel = fresh("lnb")
        if match.keeps_input:
            db = grads.get(f"d{match.b.name}")
            if w != match.w or db is None or not _zero(_canonical(inlined[db] - ops.reduce_op("sum", dout, rows, False), known)):
                return None
            rest = [(s, e) for s, e in kept if s != db]
            return [(kernel, NormRowsBackwardFromInput(dout, match.u, std, w)),
                    (du, Part(kernel, 0)), (dw, Part(kernel, 1)), (db, Part(kernel, 2)), *sorted(rest, key=lambda p: p[0].name)]
        out = [(kernel, NormRowsBackward(dout, xn, w, sympy.S.Zero, std)),
               (du, InPlaceDiv(Part(kernel, 0), std)), (dw, Part(kernel, 1)), *sorted(kept, key=lambda p: p[0].name)]
        return out
    return None


__all__ = ["NormRowsAffine", "NormRowsBackwardFromInput", "keep_input", "recomputed_xn", "Deviation", "InPlaceDiv", "Match", "NormRows", "NormRowsBackward", "Part", "backward", "find", "forward", "normalized", "deviation"]
