r"""Index notation: N-D array statements read through affine index maps, as array atoms.

A statement such as the book's convolution (chapter 7)

.. code-block:: text

    y[n, f, i, j] = sum(x[n, c, i*stride + k - pad, j*stride + l - pad] * W[f, c, k, l], (c, k, l)) + b[f]

is built, after the safe parser (:func:`symbackprop.lang.parser.parse_index_statement`) has
read it into placeholders (:class:`Read`, :class:`Over`), into two atoms of this module:

* :class:`IndexSum` ``(a_1, ..., a_m; maps; out_map; ranges; shape)``: for every index tuple
  :math:`\iota` in the ranges, :math:`\mathrm{out}[o(\iota)] \mathrel{+}= \prod_t a_t[m_t(\iota)]`;
  reads outside an array are zero and writes outside the output are dropped.  A forward
  statement writes through plain indices (``o`` the left side's indices); its VJP with respect to
  operand :math:`a_t` is the *same atom* with the roles swapped: the upstream gradient read through
  ``o`` and written through :math:`m_t` (a scatter-add, col2im):

  .. math::

      \bar a_t[m_t(\iota)] \mathrel{+}= \bar y[o(\iota)] \prod_{s \ne t} a_s[m_s(\iota)].

* :class:`IndexMax` ``max(a[m(\iota)], (k, l))`` over a window; its VJP
  (:class:`IndexMaxGrad`) sends :math:`\bar y` to the **first** arg-max of each window in
  row-major order of the reduced indices (the book's ``Pooling`` and ``np.argmax``): a subgradient;
  ties are measure-zero and the checker draws continuous values.  A padded read (zero) that is the
  maximum takes the gradient, which is then dropped.

* :class:`IndexTake` ``W[x[n, t], d]``: a gather through an integer constant declared
  ``range(V)`` (an embedding); its VJP is the same atom written through ``x``, a scatter-add
  (``np.add.at``: repeated indices add up).

* :class:`Block` ``a[n, H + h]``: along an axis that some read takes at an offset that is a size,
  reads are blocks (an LSTM's gates; ``a[n, h]`` the first), rewritten as plain reads of
  ``Block(a, axis, start, size)``; its VJP :class:`Unblock` places the gradient in zeros.

``mean(...)`` is the sum divided by the window's size (padded zeros counted, as torch's
``count_include_pad=True`` and the book's im2col ``Pooling`` with ``np.mean`` do).

Ranges come from where an index is read plainly (``W[f, c, k, l]``: ``k < KH``), from a
keyword (``max(x[...], k=pool_h)``), or, for an index only read through ``o*s + k + c`` along an
axis of size ``H``, as the number of windows that fit: ``O = (H - K - 2c)//s + 1`` (``c = -pad``:
``(H + 2*pad - K)//stride + 1``).  ``hyper`` integers (stride, pad, window sizes) are symbols
fixed at construction.  Every error is one line, before any derivation.

:meth:`IndexSum.apply` (and the others) are the definitions by explicit gathers and
``np.add.at``, evaluated on object arrays of SymPy scalars (the explicit check) or on floats and
complex numbers (the checker's reference); the generated code uses windows and einsum instead.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import sympy

from . import ops
from .errors import SpecError
from .ops import ArrayOp


class Index(sympy.Symbol):
    """A bound index of a statement (``n``, ``i``, ``k``): a nonnegative integer."""

    def __new__(cls, name: str, **_assumptions):  # (pickling passes the assumptions back)
        return super().__new__(cls, name, integer=True, nonnegative=True)


# -- placeholders the parser builds ----------------------------------------------------------
class Read(sympy.Function):
    """``a[p_1, ..., p_k]`` as parsed: the array and its positions (a placeholder)."""

    @classmethod
    def eval(cls, *args):
        return None


class Over(sympy.Function):
    """``sum/mean/max(body, (indices), k=size)`` as parsed: ``(kind, body, indices, sizes)``
    with ``kind`` 0, 1, 2 for sum, mean, max (a placeholder)."""

    KINDS = ("sum", "mean", "max")

    @classmethod
    def eval(cls, *args):
        return None


# -- the atoms ----------------------------------------------------------------------------------
class _Indexed(ArrayOp):
    """Common to the index atoms: the trailing arguments are index maps, ranges and a shape."""

    #: ``ops.evaluate`` and the float compiler pass the sizes and hyperparameters
    needs_sizes = True
    tail = 4

    @property
    def operands(self) -> int:  # type: ignore[override]
        return len(self.args) - self.tail

    @property
    def free_symbols(self) -> set:
        found = set().union(*(a.free_symbols for a in self.args))
        return {s for s in found if not isinstance(s, Index)}

    @property
    def ranges(self) -> list[tuple[Index, sympy.Expr]]:
        return [(i, e) for i, e in self.args[-2]]

    def shape(self, shapes, what=""):
        return tuple(self.args[-1])

    def apply(self, values, kind):  # pragma: no cover - always called with sizes
        raise NotImplementedError("index atoms are evaluated with sizes (apply_sized)")


class _Mapped(_Indexed):
    """An atom that reads its operands through maps and writes through the output's map:
    arguments ``..., Tuple of maps, output map, ranges, shape``."""

    @property
    def maps(self) -> list[tuple]:
        return [tuple(m) for m in self.args[-4]]

    @property
    def out_map(self) -> tuple:
        return tuple(self.args[-3])

    @property
    def is_gather(self) -> bool:
        """Writes through the plain indices of the output (a forward statement; a gather reads
        through a constant's entries)."""
        return all(isinstance(p, Index) for p in self.out_map)


class IndexSum(_Mapped):
    """``out[out_map] += prod_t a_t[maps[t]]`` over the ranges (see the module docstring).

    Arguments: the operands, ``Tuple`` of their maps, the output map, ``Tuple`` of
    ``(index, extent)``, the output shape."""

    def pullback(self, g, shapes):
        ops_ = self.args[:self.operands]
        out = []
        for t, a in enumerate(ops_):
            others = [o for s, o in enumerate(ops_) if s != t]
            maps = [self.out_map] + [m for s, m in enumerate(self.maps) if s != t]
            out.append((a, IndexSum(g, *others, sympy.Tuple(*[sympy.Tuple(*m) for m in maps]),
                                    sympy.Tuple(*self.maps[t]), self.args[-2],
                                    sympy.Tuple(*ops.shape_of(a, shapes)))))
        return out

    def apply_sized(self, values, kind, sizes: Mapping) -> object:
        arrays = [kind.array(v) for v in values]
        plan = _sum_plan(self, tuple(sorted(sizes.items(), key=lambda kv: kv[0].name)),
                         tuple(a.shape for a in arrays))
        product: object = 1
        for a, (where, inside) in zip(arrays, plan.reads):
            got = a[where]
            product = product * (got if inside is None else np.where(inside, got, 0))
        full = np.broadcast_to(np.asarray(product, dtype=object if kind is ops.SYMBOLIC else None), plan.extents)
        if self.is_gather:
            total = full.sum(axis=plan.summed) if plan.summed else full
            return np.transpose(total, plan.order) if plan.order is not None else total
        out = np.zeros(plan.shape, dtype=object if kind is ops.SYMBOLIC else np.result_type(full, float))
        np.add.at(out, plan.writes, full[plan.written])
        return out


class _SumPlan:
    """Where an :class:`IndexSum` reads and writes at given sizes (computed once per sizes)."""

    def __init__(self, atom: IndexSum, sizes: Mapping, shapes: tuple):
        indices, self.extents = _grid_extents(atom.ranges, sizes)
        grid = dict(zip(indices, np.indices(self.extents, sparse=True)))
        self.reads = [_where(m, grid, sizes, shape) for m, shape in zip(atom.maps, shapes)]
        self.shape = tuple(int(d.xreplace(sizes)) for d in atom.args[-1])
        if atom.is_gather:
            order = [indices.index(p) for p in atom.out_map]
            self.summed = tuple(k for k in range(len(indices)) if k not in order)
            kept = [k for k in range(len(indices)) if k in order]
            perm = [kept.index(k) for k in order]
            self.order = perm if perm != sorted(perm) else None
            return
        positions = [np.broadcast_to(_position(p, grid, sizes), self.extents) for p in atom.out_map]
        inside = _inside(positions, self.shape)
        self.written = inside
        self.writes = tuple(p[inside] for p in positions)


_PLANS: dict = {}


def _sum_plan(atom: IndexSum, sizes: tuple, shapes: tuple) -> _SumPlan:
    key = (atom, sizes, shapes)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 256:
            _PLANS.clear()
        plan = _PLANS[key] = _SumPlan(atom, dict(sizes), shapes)
    return plan


def _window_plan(atom: IndexMax, sizes: tuple, shape: tuple) -> tuple:
    """The index grid of a max over windows and where its read falls, once per sizes and shape
    (the checker evaluates a network's pooling thousands of times at the same sizes)."""
    key = ("windows", atom, sizes, shape)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 256:
            _PLANS.clear()
        sized = dict(sizes)
        indices, extents = _grid_extents(atom.ranges, sized)
        grid = dict(zip(indices, np.indices(extents, sparse=True)))
        plan = _PLANS[key] = (indices, extents, grid, _where(tuple(atom.args[1]), grid, sized, shape))
    return plan


def _where(m: Sequence, grid: Mapping, sizes: Mapping, shape: tuple) -> tuple[tuple, np.ndarray | None]:
    """The clipped positions of a read on the grid, and where they fall inside (None: everywhere)."""
    positions = np.broadcast_arrays(*[_position(p, grid, sizes) for p in m])
    inside = _inside(positions, shape)
    clipped = tuple(np.clip(p, 0, n - 1) for p, n in zip(positions, shape))
    return clipped, (None if inside.all() else inside)


def _inside(positions: Sequence[np.ndarray], shape: Sequence[int]) -> np.ndarray:
    """Where positions (one array per axis) fall inside an array of ``shape``."""
    inside = np.ones(np.shape(positions[0]), dtype=bool)
    for p, n in zip(positions, shape):
        inside &= (p >= 0) & (p < n)
    return inside


class IndexMax(_Indexed):
    """``out[o] = max over the reduced indices of a[m]`` (zero outside ``a``).

    Arguments: the operand, its map, the output map (plain indices), the ranges (the output's
    indices, then the reduced ones), the output shape."""

    def reduced(self) -> list[Index]:
        out = set(self.args[2])
        return [i for i, _ in self.ranges if i not in out]

    def windows(self, value, kind, sizes):
        """The operand read over the full index grid: output axes first, reduced axes flattened last."""
        a = kind.array(value)
        indices, extents, grid, (where, inside) = _window_plan(
            self, tuple(sorted(sizes.items(), key=lambda kv: kv[0].name)), a.shape)
        got = a[where]
        got = np.broadcast_to(got if inside is None else np.where(inside, got, 0), extents)
        n_out = len(self.args[2])
        return got.reshape(*extents[:n_out], -1), indices, extents, grid

    def pullback(self, g, shapes):
        a = self.args[0]
        return [(a, IndexMaxGrad(a, g, *self.args[1:4], sympy.Tuple(*ops.shape_of(a, shapes))))]

    def apply_sized(self, values, kind, sizes):
        flat = self.windows(values[0], kind, sizes)[0]
        return kind.maximum(flat, (flat.ndim - 1,), False)


class IndexMaxGrad(_Indexed):
    """The VJP of :class:`IndexMax`: ``g`` sent to the first arg-max of each window of ``a``.

    Arguments: ``a``, ``g``, then as :class:`IndexMax` (``a``'s map, the output map, the ranges),
    and ``a``'s shape."""

    def pullback(self, g, shapes):
        raise SpecError("second derivatives of max over a window are not supported")

    def apply_sized(self, values, kind, sizes):
        a, g = kind.array(values[0]), kind.array(values[1])
        owner = IndexMax(self.args[0], *self.args[2:5], self.args[-1])
        flat, indices, extents, grid = owner.windows(a, kind, sizes)
        positions = [np.broadcast_to(_position(p, grid, sizes), extents).reshape(flat.shape)
                     for p in self.args[2]]
        g = np.broadcast_to(g, flat.shape[:-1])
        symbolic = kind is ops.SYMBOLIC
        out = np.zeros(a.shape, dtype=object if symbolic else np.result_type(a, g, float))
        if symbolic:  # the first arg-max as conditions, one window cell at a time
            size = flat.shape[-1]
            for r in range(size):
                for idx in np.ndindex(*flat.shape[:-1]):
                    cell = flat[idx]
                    first = sympy.And(*[sympy.StrictGreaterThan(cell[r], cell[q], evaluate=False) for q in range(r)],
                                      *[sympy.GreaterThan(cell[r], cell[q], evaluate=False)
                                        for q in range(r + 1, size)], evaluate=False)
                    where = tuple(int(p[idx + (r,)]) for p in positions)
                    if all(0 <= w < n for w, n in zip(where, a.shape)):
                        out[where] += sympy.Piecewise((g[idx], first), (0, True))
            return out
        first = np.argmax(flat.real if np.iscomplexobj(flat) else flat, axis=-1)[..., None]
        where = [np.take_along_axis(p, first, axis=-1)[..., 0] for p in positions]
        inside = _inside(where, a.shape)
        np.add.at(out, tuple(p[inside] for p in where), g[inside])
        return out


class IndexTake(_Mapped):
    r"""A gather through an integer constant, or its scatter-add: the embedding's ``W[x[n, t], d]``.

    Arguments: the values ``a``, the integer constant ``c``, ``Tuple`` of the two maps (``a``'s,
    where the position that ``c`` gives is ``c`` itself, and ``c``'s, plain indices), the output
    map, the ranges, the output shape.  For every index tuple :math:`\iota` in the ranges,
    ``out[o(iota)] += a[m(iota)]`` with ``c[m_c(iota)]`` at ``c``'s position, in either ``m`` or ``o``.
    A forward statement reads through ``c`` and writes through plain indices (a gather); its VJP
    with respect to ``a`` is the same atom with the two maps of ``a`` and the output swapped: the
    upstream gradient read plainly and written through ``c`` (``np.add.at``: repeated entries of
    ``c`` add up).  ``c`` has no gradient: it holds integers.
    """

    @property
    def operands(self) -> int:  # type: ignore[override]
        return 2

    @property
    def axis(self) -> int:
        """The axis of the array written or read through the constant."""
        written = self.maps[0] if self.is_gather else self.out_map
        return written.index(self.args[1])

    def pullback(self, g, shapes):
        a, c = self.args[:2]
        maps = sympy.Tuple(sympy.Tuple(*self.out_map), self.args[-4][1])
        return [(a, IndexTake(g, c, maps, sympy.Tuple(*self.maps[0]), self.args[-2],
                              sympy.Tuple(*ops.shape_of(a, shapes))))]

    def apply_sized(self, values, kind, sizes: Mapping) -> object:
        a, c = kind.array(values[0]), np.asarray(values[1])
        indices, extents = _grid_extents(self.ranges, sizes)
        grid = dict(zip(indices, np.indices(extents, sparse=True)))
        taken = np.asarray(c[tuple(grid[i] for i in self.maps[1])]).astype(np.intp)

        def where(m: Sequence) -> tuple:
            return tuple(np.broadcast_to(taken if p == self.args[1] else _position(p, grid, sizes), extents)
                         for p in m)

        got = a[where(self.maps[0])]
        if self.is_gather:
            order = [indices.index(p) for p in self.out_map]
            return np.transpose(got, order) if order != sorted(order) else got
        shape = tuple(int(d.xreplace(sizes)) for d in self.args[-1])
        out = np.zeros(shape, dtype=object if kind is ops.SYMBOLIC else np.result_type(got, float))
        np.add.at(out, where(self.out_map), got)
        return out


class Block(ArrayOp):
    """``a[..., start:start + size, ...]`` along ``axis``: a block of an axis read in blocks (an
    LSTM's gates ``a[n, H + h]``).  Arguments: ``a``, the axis, the start, the size (sizes)."""

    needs_sizes = True

    def shape(self, shapes, what=""):
        inner = list(ops.shape_of(self.args[0], shapes, what))
        inner[int(self.args[1])] = self.args[3]
        return tuple(inner)

    def cut(self, sizes: Mapping) -> tuple:
        start = int(self.args[2].xreplace(sizes))
        return (slice(None),) * int(self.args[1]) + (slice(start, start + int(self.args[3].xreplace(sizes))),)

    def pullback(self, g, shapes):
        a = self.args[0]
        full = ops.shape_of(a, shapes)[int(self.args[1])]
        return [(a, Unblock(g, self.args[1], self.args[2], full))]

    def apply_sized(self, values, kind, sizes):
        return kind.array(values[0])[self.cut(sizes)]


class Unblock(ArrayOp):
    """The adjoint of :class:`Block`: ``g`` placed at ``start`` along ``axis`` of zeros of size
    ``full`` there.  Arguments: ``g``, the axis, the start, the full size."""

    needs_sizes = True

    def shape(self, shapes, what=""):
        inner = list(ops.shape_of(self.args[0], shapes, what))
        inner[int(self.args[1])] = self.args[3]
        return tuple(inner)

    def pullback(self, g, shapes):
        size = ops.shape_of(self.args[0], shapes)[int(self.args[1])]
        return [(self.args[0], Block(g, self.args[1], self.args[2], size))]

    def apply_sized(self, values, kind, sizes):
        g = kind.array(values[0])
        axis, start = int(self.args[1]), int(self.args[2].xreplace(sizes))
        shape = list(g.shape)
        shape[axis] = int(self.args[3].xreplace(sizes))
        out = np.zeros(shape, dtype=object if kind is ops.SYMBOLIC else np.result_type(g, float))
        out[(slice(None),) * axis + (slice(start, start + g.shape[axis]),)] = g
        return out


INDEX_ATOMS = (IndexSum, IndexMax, IndexMaxGrad, IndexTake)


def _grid_extents(ranges, sizes) -> tuple[list[Index], tuple[int, ...]]:
    indices = [i for i, _ in ranges]
    extents = tuple(int(e.xreplace(sizes)) for _, e in ranges)
    return indices, extents


def _position(p: sympy.Expr, grid: Mapping, sizes: Mapping) -> np.ndarray:
    """An affine position evaluated on the index grid (integers)."""
    p = sympy.expand(p.xreplace(sizes))
    value: object = 0
    for term, coeff in p.as_coefficients_dict().items():
        if term == 1:
            value = value + int(coeff)
        else:
            value = value + int(coeff) * grid[term]
    return np.asarray(value)


# -- analysis of positions -------------------------------------------------------------------------
def affine(p: sympy.Expr, what: str) -> tuple[list[tuple[Index, sympy.Expr]], sympy.Expr]:
    """``p`` as ``sum(coeff*index) + const`` with integer/hyper coefficients; at most two indices,
    one of them with coefficient 1 when there are two."""
    indices = sorted(p.atoms(Index), key=lambda s: s.name)
    expanded = sympy.expand(p)
    terms, const = [], expanded
    for i in indices:
        coeff = expanded.coeff(i)
        if coeff.atoms(Index) or coeff == 0:
            raise SpecError(f"{what}position {p} is not affine in its indices")
        terms.append((i, coeff))
        const = const - coeff * i
    const = sympy.expand(const)
    if const.atoms(Index):
        raise SpecError(f"{what}position {p} is not affine in its indices")
    if not terms:
        raise SpecError(f"{what}position {p} names no index (constant positions come later)")
    if len(terms) > 2 or (len(terms) == 2 and all(c != 1 for _, c in terms)):
        raise SpecError(f"{what}position {p}: at most a window o*stride + k + offset is supported")
    return terms, const


def _read_text(r: Read) -> str:
    return f"{r.args[0]}[{', '.join(_read_text(p) if isinstance(p, Read) else str(p) for p in r.args[1])}]"


def _gathers(rhs: sympy.Expr, shapes: Mapping, integers: Mapping, what: str) -> list[Read]:
    """The reads of ``rhs`` with a position read from an integer constant (``W[x[n, t], d]``),
    checked: one such position per read, the constant's own positions plain indices, its range
    the size of the axis it indexes, and the read outside any reduction."""
    out = []
    for r in sorted(rhs.atoms(Read), key=sympy.default_sort_key):
        inner = [p for p in r.args[1] if isinstance(p, Read)]
        if not inner:
            continue
        text = _read_text(r)
        if len(inner) > 1:
            raise SpecError(f"{what}{text}: one position per read can come from an integer constant")
        (c_read,) = inner
        c, axis = c_read.args[0], list(r.args[1]).index(c_read)
        if c not in integers:
            raise SpecError(f"{what}{text}: a position read from {c} needs {c} an integer constant with its range "
                            f"(constants = {{ {c} = [...] }}, symbols = {{ {c} = \"range(V)\" }})")
        if any(not isinstance(p, Index) for p in c_read.args[1]) or len(set(c_read.args[1])) != len(c_read.args[1]):
            raise SpecError(f"{what}{text}: the positions of {c} must be distinct plain indices")
        if len(c_read.args[1]) != len(shapes[c]):
            raise SpecError(f"{what}{text}: {c} has {len(shapes[c])} axes, indexed with {len(c_read.args[1])}")
        if any(not isinstance(p, (Index, Read)) for p in r.args[1]):
            raise SpecError(f"{what}{text}: the other positions of a gather are plain indices")
        if r.args[0] in shapes and axis < len(shapes[r.args[0]]) \
                and sympy.simplify(integers[c] - shapes[r.args[0]][axis]) != 0:
            raise SpecError(f"{what}{text}: {c} takes values in range({integers[c]}) but indexes an axis of size "
                            f"{shapes[r.args[0]][axis]}")
        out.append(r)
    for over in rhs.atoms(Over):
        if any(over.has(g) for g in out):
            raise SpecError(f"{what}a gather inside a reduction is not supported yet (read it in a node of its own)")
    return out


def _sliced(slices: Sequence, ranges: Mapping, shapes: Mapping, what: str, constraints: list) -> dict:
    """Each read of a block, ``a[n, H + h]``, as a plain read of :class:`Block` ``(a, 1, H, H)``
    (``h``'s range the block's size); a block that cannot fit is refused, one that fits only at
    some sizes adds a constraint."""
    out: dict = {}
    by_read: dict = {}
    for r, axis, i, start in slices:
        by_read.setdefault(r, []).append((axis, i, start))
    for r, cuts in by_read.items():
        operand, positions = r.args[0], list(r.args[1])
        for axis, i, start in cuts:
            size = shapes[r.args[0]][axis]
            spare = sympy.expand(size - start - ranges[i])
            if spare.is_negative:
                raise SpecError(f"{what}{_read_text(r)}: the block {start}:{start + ranges[i]} does not fit "
                                f"in an axis of size {size}")
            if not spare.is_nonnegative:
                constraints.append(("positive", spare + 1))
            operand, positions[axis] = Block(operand, sympy.Integer(axis), start, ranges[i]), i
        out[r] = Read(operand, sympy.Tuple(*positions))
    return out


def _blocked(reads: Sequence[Read], dims: set) -> set[tuple]:
    """The axes read in blocks, ``(array, axis)``: some read of the array takes ``h + c`` there with
    ``c`` a size (``a[n, H + h]``, an LSTM's second gate).  Along such an axis a read ``h + c`` is a
    slice and gives ``h`` no range (another read must), and ``a[n, h]`` is the first block."""
    out = set()
    for r in reads:
        for axis, p in enumerate(r.args[1]):
            if isinstance(p, Read):
                continue
            const = sympy.expand(p).as_independent(*p.atoms(Index), as_Add=True)[0]
            if const.free_symbols & dims and len(p.atoms(Index)) == 1:
                out.add((r.args[0], axis))
    return out


def _positive(e: sympy.Expr, hyper: Mapping) -> bool | None:
    value = e.xreplace(hyper)
    return bool(value >= 1) if value.is_number else None


# -- building a statement ---------------------------------------------------------------------------
def build_statement(lhs: sympy.Symbol, lhs_indices: Sequence[Index], rhs: sympy.Expr,
                    shapes: Mapping[sympy.Symbol, tuple], hyper: Mapping[sympy.Symbol, int],
                    tile: bool = False, what: str = "",
                    inferable: Collection[sympy.Symbol] = (),
                    integers: Mapping[sympy.Symbol, sympy.Expr] | None = None) -> tuple[sympy.Expr, tuple, list, dict]:
    """The atoms of ``lhs[lhs_indices] = rhs``, its shape, the size constraints, and the sizes
    inferred.

    ``inferable``: sizes no input has (a parameter's only, such as the pooled height ``PH`` of
    ``W2[f, i, j, h]`` after pooling); one an index ranges over while the same index ranges over
    a computed extent elsewhere (a window count, not a plain size) is that extent.

    ``integers`` are the integer constants and their ranges (``x`` -> ``V``: values in
    ``range(V)``); a read of one as another read's position is a gather (:class:`IndexTake`).

    Returns
    -------
    expr : sympy.Expr
        ``rhs`` with every read and reduction an atom of the left side's shape.
    shape : tuple
        The left side's shape (the ranges of its indices).
    constraints : list of (str, sympy.Expr)
        ``("positive", e)``: ``e >= 1`` (a window count); ``("divides", (e, s))``: ``s`` divides
        ``e`` (``tile``).  The samplers draw only sizes that meet them.
    inferred : dict
        Each inferred size (a symbol of ``inferable``) and its extent, already substituted in
        ``expr`` and ``shape``; the caller substitutes it in the declared shapes.
    """
    hyper = {h: sympy.Integer(v) for h, v in hyper.items()}
    if len(set(lhs_indices)) != len(lhs_indices):
        raise SpecError(f"{what}an index appears twice on the left side")
    gathers = _gathers(rhs, shapes, dict(integers or {}), what)
    inner = {p for g in gathers for p in g.args[1] if isinstance(p, Read)}
    reads = sorted(rhs.atoms(Read) - inner, key=sympy.default_sort_key)
    overs = sorted(rhs.atoms(Over), key=sympy.default_sort_key)
    ranges: dict[Index, sympy.Expr] = {}
    origin: dict[Index, str] = {}
    inferred: dict[sympy.Symbol, sympy.Expr] = {}

    def give(i: Index, extent: sympy.Expr, where: str) -> None:
        extent = extent.xreplace(inferred)
        if i in ranges:
            known = ranges[i].xreplace(inferred)
            size, computed = (known, extent) if known in inferable else (extent, known)
            if size in inferable and not computed.is_Symbol and size not in computed.free_symbols:
                inferred[size] = computed
                ranges[i] = known = computed
            if sympy.simplify(known - extent.xreplace(inferred)) != 0:
                raise SpecError(f"{what}index {i} ranges over {ranges[i]} in {origin[i]} but over {extent} in {where}")
        ranges.setdefault(i, extent)
        origin.setdefault(i, where)

    for over in overs:
        for i, size in over.args[3]:
            give(i, size, f"{Over.KINDS[int(over.args[0])]}(..., {i}={size})")
    windows = []
    dims = {d for shape in shapes.values() for e in shape for d in e.free_symbols} - set(hyper)
    blocked = _blocked(reads, dims)
    slices = []
    for r in reads:
        array, positions = r.args[0], tuple(r.args[1])
        text = f"{array}[{', '.join(map(str, positions))}]"
        if array not in shapes:
            raise SpecError(f"{what}{array} is not an array")
        shape = shapes[array]
        if len(shape) != len(positions):
            raise SpecError(f"{what}{text}: {array} has {len(shape)} axes, indexed with {len(positions)}")
        seen: set = set()
        for axis, p in enumerate(positions):
            if isinstance(p, Read):  # a gather: the constant's indices range over its axes
                for i, n in zip(p.args[1], shapes[p.args[0]]):
                    give(i, n, str(p.args[0]) + f"[{', '.join(map(str, p.args[1]))}]")
                continue
            terms, const = affine(p, f"{what}{text}: ")
            if (array, axis) in blocked and len(terms) == 1 and terms[0][1] == 1:  # a slice: a block of the axis
                slices.append((r, axis, terms[0][0], const))
                continue
            named = {str(x) for _, c in terms for x in c.free_symbols} | {str(x) for x in const.free_symbols}
            loose = sorted(named - {h.name for h in hyper})
            if loose:
                raise SpecError(f"{what}{text}: position {p}: strides and offsets are integers or hyperparameters, "
                                f"not {loose[0]}")
            if any(c.is_Number and c < 1 for _, c in terms):
                raise SpecError(f"{what}{text}: position {p}: a stride must be positive (flips come later)")
            for i, _ in terms:
                if i in seen:
                    raise SpecError(f"{what}{text}: index {i} appears twice in one read")
                seen.add(i)
            if len(terms) == 1 and terms[0][1] == 1 and const == 0:
                give(terms[0][0], shape[axis], text)
            else:
                windows.append((text, terms, const, shape[axis]))
    for _ in range(len(windows) + 1):  # a window count may need a size given by another window
        for text, terms, const, size in windows:
            size = size.xreplace(inferred)
            unknown = [(i, c) for i, c in terms if i not in ranges]
            if len(unknown) != 1:
                continue
            (o, s), = unknown
            known = [(i, c) for i, c in terms if i in ranges]
            if known and known[0][1] != 1:
                raise SpecError(f"{what}{text}: cannot infer the range of {o}: give it, e.g. sum(..., {o}=K)")
            k_extent = ranges[known[0][0]] if known else sympy.S.One
            give(o, sympy.floor((size - k_extent - 2 * const) / s) + 1, text)
    used = set().union(*(r.atoms(Index) for r in reads))
    for i in sorted(used | set(lhs_indices), key=lambda s: (s in lhs_indices, s.name)):  # a window's first
        if i not in ranges:
            raise SpecError(f"{what}cannot infer the range of index {i} (read it plainly somewhere, "
                            f"or give it as a keyword: sum(..., {i}=K))")
    ranges = {i: e.xreplace(inferred) for i, e in ranges.items()}
    windows = [(text, terms, const, size.xreplace(inferred)) for text, terms, const, size in windows]
    constraints: list = []
    rhs = rhs.xreplace(_sliced(slices, ranges, shapes, what, constraints))
    overs = sorted(rhs.atoms(Over), key=sympy.default_sort_key)
    for text, terms, const, size in windows:
        outer = next((i for i, c in terms if c != 1), terms[0][0])
        s = dict(terms)[outer]
        k = [i for i, _ in terms if i != outer]
        k_extent = ranges[k[0]] if k else sympy.S.One
        count = ranges[outer]
        constraints.append(("positive", count))
        fits = _positive(count.xreplace(hyper), {})
        if fits is False:
            raise SpecError(f"{what}{text}: the window does not fit ({count.xreplace(hyper)} positions along "
                            f"an axis of size {size})")
        if tile:
            span = sympy.expand(size - k_extent - 2 * const)
            constraints.append(("divides", (span, s)))
            at = (span.xreplace(hyper), s.xreplace(hyper))
            if at[0].is_Integer and at[1].is_Integer and int(at[0]) % int(at[1]):
                gap = f"{size} - {k_extent}" + (f" + 2*{-const}" if const != 0 else "")
                raise SpecError(f"{what}{text}: the stride {s} = {at[1]} does not divide {gap} = {at[0]} "
                                "(tile = true: every input position must be read)")
    for s in {c for _, terms, _, _ in windows for _, c in terms}:
        if _positive(s, hyper) is False:
            raise SpecError(f"{what}a stride {s} = {s.xreplace(hyper)} is not positive")
    out_shape = sympy.Tuple(*[ranges[i] for i in lhs_indices])
    lhs_set = set(lhs_indices)

    def ranges_of(indices) -> sympy.Tuple:
        return sympy.Tuple(*[sympy.Tuple(i, ranges[i]) for i in indices])

    def atom(over: Over) -> sympy.Expr:
        kind, body, bound = Over.KINDS[int(over.args[0])], over.args[1], list(over.args[2])
        bound += [i for i, _ in over.args[3] if i not in bound]
        clash = [i for i in bound if i in lhs_set]
        if clash:
            raise SpecError(f"{what}index {clash[0]} is on the left side and reduced by {kind}()")
        factors = sympy.Mul.make_args(body)
        inner = [f for f in factors if isinstance(f, Read)]
        scalars = [f for f in factors if not isinstance(f, Read)]
        if not inner or any(f.atoms(Read, Over, Index, ops.ArrayVar) for f in scalars):
            raise SpecError(f"{what}the body of {kind}() must be a product of array reads (and numbers)")
        free = set().union(*(f.atoms(Index) for f in inner))
        stray = sorted(free - lhs_set - set(bound), key=lambda s: s.name)
        if stray:
            raise SpecError(f"{what}index {stray[0]} is neither on the left side nor reduced")
        order = [*lhs_indices, *[i for i in bound if i not in lhs_indices]]
        if kind == "max":
            if len(inner) != 1 or scalars:
                raise SpecError(f"{what}max() takes one array read")
            return IndexMax(inner[0].args[0], inner[0].args[1], sympy.Tuple(*lhs_indices), ranges_of(order),
                            out_shape)
        total = IndexSum(*[f.args[0] for f in inner], sympy.Tuple(*[f.args[1] for f in inner]),
                         sympy.Tuple(*lhs_indices), ranges_of(order), out_shape)
        scale = sympy.Mul(*scalars)
        if kind == "mean":
            scale = scale / sympy.Mul(*[ranges[i] for i in bound])
        return scale * total

    table = {over: atom(over) for over in overs}
    expr = rhs.xreplace(table)
    loose = {}
    for r in expr.atoms(Read) - inner:
        stray = sorted(r.atoms(Index) - lhs_set, key=lambda s: s.name)
        if stray:
            raise SpecError(f"{what}index {stray[0]} is neither on the left side nor reduced")
        gathered = next((p for p in r.args[1] if isinstance(p, Read)), None)
        if gathered is not None:
            at = sympy.Tuple(*[gathered.args[0] if p == gathered else p for p in r.args[1]])
            loose[r] = IndexTake(r.args[0], gathered.args[0], sympy.Tuple(at, gathered.args[1]),
                                 sympy.Tuple(*lhs_indices), ranges_of(lhs_indices), out_shape)
            continue
        loose[r] = IndexSum(r.args[0], sympy.Tuple(r.args[1]), sympy.Tuple(*lhs_indices),
                            ranges_of(lhs_indices), out_shape)
    expr = expr.xreplace(loose)
    if expr.atoms(Index) - set().union(*(a.args[-2].atoms(Index) for a in expr.atoms(*INDEX_ATOMS))):
        raise SpecError(f"{what}an index appears outside a read")
    return expr, tuple(out_shape), constraints, inferred


# -- sizes that fit ------------------------------------------------------------------------------------
def fits(constraints: Sequence, sizes: Mapping) -> bool:
    """Do ``sizes`` (dimensions and hyperparameters, symbol -> int) meet the constraints?"""
    sizes = {k: sympy.Integer(v) for k, v in sizes.items()}
    for kind, e in constraints:
        if kind == "positive":
            value = e.xreplace(sizes)
            if not (value.is_number and value >= 1):
                return False
        else:
            span, s = (x.xreplace(sizes) for x in e)
            if not (span.is_Integer and s.is_Integer and int(s) > 0 and int(span) >= 0 and int(span) % int(s) == 0):
                return False
    return True


def fitted(constraints: Sequence, sizes: Mapping, grow: Sequence[sympy.Symbol]) -> dict:
    """``sizes`` with the dimensions ``grow`` (an input's spatial sizes) increased until the
    constraints hold: each step, every constraint that fails grows the first of them it names
    (deterministic)."""
    out = dict(sizes)
    for _ in range(400):
        failing = [c for c in constraints if not fits([c], out)]
        if not failing:
            return out
        bumped = set()
        for kind, e in failing:
            names = (e if kind == "positive" else e[0]).free_symbols
            first = next((d for d in grow if d in names), None)
            if first is None:
                raise SpecError("no sizes fit the declaration's windows")
            if first not in bumped:
                out[first] += 1
                bumped.add(first)
    raise SpecError("no sizes fit the declaration's windows")


def growing_dims(constraints: Sequence) -> list[sympy.Symbol]:
    """Dimensions a window count grows with (``H`` in ``(H + 2*pad - KH)//stride + 1``)."""
    found = set()
    for kind, e in constraints:
        if kind == "positive":
            arg = next(iter(e.atoms(sympy.floor))).args[0] if e.atoms(sympy.floor) else e
            num = sympy.fraction(sympy.together(arg))[0]
            found |= {s for s in num.free_symbols if sympy.expand(num).coeff(s).is_positive}
    return sorted(found, key=lambda s: s.name)
