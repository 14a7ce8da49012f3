r"""The fused backend: each pass of a layer as one multi-threaded loop, compiled by numba.

The fused backend prints the same statements as the numpy backend
(:mod:`symbackprop.codegen.scaffold`), but elementwise work is gathered into loops that read every
input once and write every result once, on all cores:

* an elementwise layer gets one kernel for ``forward`` (the output *and* what ``backward``
  caches, a boolean mask say, in the same sweep) and one for ``backward``;
* an array layer keeps its matrix products with BLAS (``np.matmul(..., out=buffer)``); the
  statements around them (bias, activation, softmax, loss) become kernels over rows: a row
  is read from memory once and stays in the L1 cache while its maximum, its sum of
  exponentials and its outputs are computed; reductions over every element (a loss) are
  summed per row, then over the rows.  Reductions down the columns (``sum(dout, axis=0)``)
  stay with numpy.

Why numba and not numexpr, with the numbers measured on the project's machine: see
``benchmarks/RESULTS.md``.  In short, numexpr and numba both evaluate ``exp`` and ``tanh``
with the C library one element at a time, several times slower than numpy's own SIMD
loops; numba can instead inline the polynomial forms of :mod:`symbackprop.runtime.vecmath` (``exp_``
and friends, within 2 units in the last place of mpmath), which LLVM vectorizes.  Kernels are
compiled with one fast-math flag, ``contract`` (fused multiply-adds); sums over a row are
written to a work row and added by ``row_sum``, the only reassociated loop (as numpy's
pairwise sum is), so the elementary functions keep their accuracy.

Arrays that a kernel writes are kept between calls (:func:`symbackprop.runtime.fused.buffer`) and reused when
nobody else holds them any more, so a layer called again and again with the same shapes
allocates nothing and takes no page faults.  A result the caller still holds is never
overwritten: the reference count decides.

A kernel computes in the dtype of its result, as numpy would: its last argument ``_like``
is an empty array of that dtype, ``_F = _like.dtype.type``, and every constant is written
``_F(c)``, so that float32 data stay float32 in the registers (twice the SIMD lanes, shorter
polynomials) instead of being widened by a float64 constant; float32 in, float32 out.  Sums
over a row are accumulated in float64.  Complex input (the checker's complex step) runs the
numpy backend's ``forward``, kept in the class; other dtypes (float16) are refused with a
``TypeError``.  Loops over at least :data:`PARALLEL_MIN` elements run on every core, or
serially when that has been faster lately (:class:`symbackprop.runtime.fused.Kernel`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy

from .. import ops
from ..errors import GenerationError
from ..lang.functions import BY_CLASS, NODES
from . import scaffold
from .numpy import NumpyLayerPrinter
from .scaffold import INDENT, Parts


class NoKernel(GenerationError):
    """A function of the declaration that numba has no implementation of."""


class FusedPrinter(NumpyLayerPrinter):
    """Prints one element of an expression inside a kernel loop: the fast functions of
    :mod:`symbackprop.runtime.vecmath` (``_fused.exp_``), ``a if c else b`` for ``where``, ``math``
    for the rest, and every constant as ``_F(c)``, of the kernel's dtype."""

    def _number(self, text: str) -> str:
        return f"_F({text})"

    def _print_Function(self, e):
        row = BY_CLASS.get(type(e))
        if row is None or row.numba is None:
            raise NoKernel(f"no numba kernel for '{type(e).__name__}' (in {e})")
        return f"{row.numba}({', '.join(self._print(a) for a in e.args)})"

    def _print_Max(self, e):
        return self._fold("_fused.maximum_", e.args)

    def _print_Min(self, e):
        return self._fold("_fused.minimum_", e.args)

    def _where(self, cond: str, value: str, otherwise: str) -> str:
        return f"({value} if {cond} else {otherwise})"

    def _print_ArrayOp(self, e):  # pragma: no cover - the planner never leaves one in a kernel
        raise GenerationError(f"no kernel form for {type(e).__name__}")


for _row in NODES:  # every row: one without a kernel must not reach numba through the numpy printer
    if f"_print_{_row.sympy.__name__}" not in FusedPrinter.__dict__:
        setattr(FusedPrinter, f"_print_{_row.sympy.__name__}", FusedPrinter._print_Function)


# -- the generated class: shared pieces -----------------------------------------------------------
def parts(derivation) -> Parts:
    """The fused module's imports, kernels, and the bodies of ``forward`` and ``backward``.

    Complex input (the checker's complex step) runs the numpy backend's ``forward``, kept as
    ``_forward_numpy``: the kernels compute in float32 and float64 only.
    """
    from ..runtime import fused as runtime  # imports numba: only when a fused module is made

    if runtime.nb is None:
        raise GenerationError(runtime.INSTALL_HINT)
    spec = derivation.spec
    builder = _RowBuilder(derivation) if spec.is_array else _FlatBuilder(derivation)
    arguments = [s.name for s in (*spec.inputs, *spec.constants)]
    values = [*arguments, *scaffold.param_refs(spec).values()]
    forward = [f"if _fused.is_complex({', '.join(values)}):  # complex step: numpy, not the kernels",
               f"{INDENT}return self._forward_numpy({', '.join(arguments)})", *builder.forward()]
    methods = ["", f"{INDENT}def _forward_numpy(self, {', '.join(arguments)}):",
               f'{INDENT * 2}"""The numpy backend\'s forward, for complex values."""',
               *[INDENT * 2 + line for line in scaffold.forward_lines(derivation)]]
    imports = ["import math", "", "import numba as nb", "import numpy as np", "",
               "from symbackprop.runtime import fused as _fused"]
    return Parts(imports, builder.definitions, ["self._buffers = {}  # work arrays kept between calls"],
                 forward, builder.backward(), methods)


def _kernel_def(fname: str, params: list[str], body: list[str], doc: str) -> list[str]:
    """A module-level kernel: plain Python with ``nb.prange``, wrapped in :class:`Kernel`; its
    last parameter ``_like`` is an empty array of the dtype it computes in (see :func:`like`)."""
    return ["", "", f"def {fname}({', '.join([*params, '_like'])}):", f'{INDENT}"""{doc}"""',
            f"{INDENT}_F = _like.dtype.type  # constants in the result's dtype",
            *[INDENT + line for line in body], "", "", f"{fname} = _fused.Kernel({fname})"]


def _store(ref: str, name: str, shape: str, dtype: str) -> str:
    return f'{name} = _fused.buffer(self._buffers, "{ref}", {shape}, {dtype})'


# -- elementwise layers: one flat loop per pass ----------------------------------------------------
class _FlatBuilder:
    """Elementwise layers: every array has the shape of the inputs; each pass is one loop over
    the flattened ops."""

    def __init__(self, derivation):
        self.d = derivation
        self.spec = derivation.spec
        self.definitions: list[str] = []
        self.masks = {c.symbol for c in derivation.cache if c.mask}

    def _kernel(self, fname: str, pairs, reads, writes, doc: str) -> None:
        used = set().union(*(e.free_symbols for _, e in pairs)) if pairs else set()
        reserved = {s.name for s in (*reads, *writes)} | {s.name for s, _ in pairs}
        body = [f"for _k in nb.prange(_a_{writes[0].name}.shape[0]):"]
        loop = [f"{s.name} = _a_{s.name}[_k]" for s in reads if s in used]
        loop += scaffold.statements(pairs, FusedPrinter(), reserved)
        loop += [f"_a_{s.name}[_k] = {s.name}" for s in writes]
        body += [INDENT + line for line in loop]
        params = [f"_a_{s.name}" for s in (*reads, *writes)]
        self.definitions += _kernel_def(fname, params, body, doc)

    def forward(self) -> list[str]:
        spec = self.spec
        pairs = scaffold.forward_pairs(self.d)
        computed = [s for s, _ in pairs]
        cached = [c.symbol for c in self.d.cache]
        writes = [spec.output] + [s for s in cached if s in computed and s != spec.output]
        self._kernel("_forward", pairs, list(spec.inputs), writes,
                     f"{spec.name}.forward: the output and the cache in one sweep.")
        names = [s.name for s in spec.inputs]
        lines = [f"({', '.join(names)},), _shape, _dtype = _fused.operands({', '.join(names)})"]
        lines += [f"self.{c} = None" for c in self.d.cache_names]
        lines += [_store(s.name, s.name, "_shape", "np.bool_" if s in self.masks else "_dtype") for s in writes]
        args = ", ".join(f"{s.name}.reshape(-1)" for s in (*spec.inputs, *writes))
        lines.append(f"_forward({writes[0].name}.size, {args}, _fused.like(_dtype))")
        lines += [f"self.{c} = {c}" for c in self.d.cache_names]
        lines.append(f"return _fused.result({spec.output.name})")
        return lines

    def backward(self) -> list[str]:
        d = self.d
        pairs = [(c.symbol, c.expr) for c in d.recompute] + list(d.steps)
        used = set().union(*(e.free_symbols for _, e in pairs))
        floats = [c.symbol for c in d.cache if not c.mask and c.symbol in used]
        masks = [c.symbol for c in d.cache if c.mask and c.symbol in used]
        grads = [s for s, _ in d.steps if s.name in {f"d{n}" for n in d.spec.input_names}]
        grads.sort(key=lambda s: d.spec.input_names.index(s.name[1:]))
        reads = [d.dout, *floats, *masks]
        self._kernel("_backward", pairs, reads, grads, f"{d.spec.name}.backward: every input's gradient in one sweep.")
        local = {s: f"_c_{s.name}" for s in floats}
        lines = [f"({', '.join(['dout', *local.values()])},), _shape, _dtype = "
                 f"_fused.operands({', '.join(['dout', *[f'self.{s.name}' for s in floats]])})"]
        lines += [_store(g.name, g.name, "_shape", "_dtype") for g in grads]
        sources = ["dout", *local.values(), *[f"self.{s.name}" for s in masks], *[g.name for g in grads]]
        lines.append(f"_backward({grads[0].name}.size, {', '.join(f'{a}.reshape(-1)' for a in sources)}, _fused.like(_dtype))")
        lines.append("return " + ", ".join(f"_fused.result({g.name})" for g in grads))
        return lines


# -- array layers: matrix products by BLAS, the rest as loops over rows ----------------------------
_ROW_ATOMS = (ops.Softmax, ops.LogSoftmax, ops.LogSumExp, ops.ReduceSum, ops.ReduceMean,
              ops.ReduceMax)
_TOTALS = (ops.ReduceSum, ops.ReduceMean, ops.ReduceMax)


@dataclass
class _Statement:
    """``symbol = expr`` inside a row kernel; kind ``elem`` (an element per (i, j)), ``row``
    (one value per row) or ``total`` (a scalar summed over every row)."""

    symbol: sympy.Symbol
    expr: sympy.Expr
    kind: str
    shape: tuple


@dataclass
class _Group:
    """Consecutive statements over one 2-D domain ``(R, C)``: one kernel."""

    domain: tuple
    statements: list


class _RowBuilder:
    """Array layers: each statement is either numpy (matrix products, reductions down the
    columns, anything not over rows) or part of a kernel over the rows of a 2-D domain."""

    def __init__(self, derivation):
        self.d = derivation
        self.spec = derivation.spec
        self.definitions: list[str] = []
        self.shapes = dict(self.spec.shapes)
        self.shapes[derivation.dout] = self.spec.shapes[self.spec.output]
        self.fresh = (f"_m{i}" for i in itertools.count())
        self.kernels = itertools.count()

    # -- planning: which statements fuse ------------------------------------------------------
    def _axes(self, atom) -> tuple[int, ...]:
        ndim = len(ops.shape_of(atom.args[0], self.shapes))
        axes = (int(atom.args[1]),) if isinstance(atom, (ops.Softmax, ops.LogSoftmax)) else atom.axes
        return tuple(sorted(a % ndim for a in axes)) if axes else tuple(range(ndim))

    def _fusable_atom(self, atom) -> bool:
        """A reduction or softmax along the rows of a 2-D operand, or a sum over everything."""
        if not isinstance(atom, _ROW_ATOMS) or len(ops.shape_of(atom.args[0], self.shapes)) != 2:
            return False
        axes = self._axes(atom)
        return axes == (1,) or (axes == (0, 1) and isinstance(atom, _TOTALS) and not atom.keepdims)

    def _extract(self, expr, numpy_steps: list):
        """``expr`` with every part a kernel cannot compute (matrix products, column sums, ...)
        replaced by a temporary computed by numpy first."""
        if isinstance(expr, ops.ArrayOp):
            if self._fusable_atom(expr):
                return expr.func(self._extract(expr.args[0], numpy_steps), *expr.args[1:])
            name = ops.ArrayVar(next(self.fresh), real=True)
            self.shapes[name] = ops.shape_of(expr, self.shapes)
            numpy_steps.append((name, expr))
            return name
        if not expr.args or isinstance(expr, sympy.Symbol):
            return expr
        return expr.func(*[self._extract(a, numpy_steps) for a in expr.args])

    def _leaf_shapes(self, expr) -> list[tuple]:
        return [tuple(self.shapes.get(s, ())) for s in expr.free_symbols]

    def _domain(self, expr) -> tuple | None:
        """The 2-D shape a fusable expression runs over, or None."""
        atoms = [a for a in expr.atoms(ops.ArrayOp)]
        shapes = [tuple(ops.shape_of(a.args[0], self.shapes)) for a in atoms] + self._leaf_shapes(expr)
        try:
            domain = ops.broadcast(*shapes) if shapes else ()
        except Exception:  # noqa: BLE001 - shapes the planner cannot follow stay numpy
            return None
        if len(domain) != 2 or sympy.S.One in domain:
            return None
        if any(tuple(ops.shape_of(a.args[0], self.shapes)) != domain for a in atoms):
            return None
        return domain

    def _kind(self, expr, shape: tuple, domain: tuple) -> str | None:
        rows, cols = domain
        if shape == domain:
            totals = [a for a in expr.atoms(*_TOTALS) if self._axes(a) == (0, 1)]
            return None if totals else "elem"
        if shape in ((rows, sympy.S.One), (rows,)):
            bare = expr.xreplace({a: sympy.Symbol("_r") for a in expr.atoms(*_ROW_ATOMS)})
            leaves = self._leaf_shapes(bare)
            return "row" if all(s in ((), shape, (1,), (1, 1)) for s in leaves) else None
        if shape == ():
            bare = expr.xreplace({a: sympy.Symbol("_r") for a in expr.atoms(*_TOTALS) if self._axes(a) == (0, 1)})
            if bare.atoms(ops.ArrayOp) or any(self._leaf_shapes(bare)):
                return None
            return "total"
        return None

    def plan(self, pairs) -> list:
        """Statements in order: ``("numpy", symbol, expr)`` or a :class:`_Group`."""
        steps: list = []
        for symbol, expr in pairs:
            shape = tuple(ops.shape_of(expr, self.shapes))
            self.shapes.setdefault(symbol, shape)
            numpy_steps: list = []
            reduced = self._extract(expr, numpy_steps)
            domain = self._domain(reduced) if not isinstance(reduced, sympy.Symbol) or not numpy_steps else None
            if domain is None and not numpy_steps and steps and isinstance(steps[-1], _Group):
                domain = steps[-1].domain  # one value per row of the kernel before (std = sqrt(var + eps))
                domain = domain if self._kind(reduced, shape, domain) == "row" else None
            kind = self._kind(reduced, shape, domain) if domain else None
            if kind is None:
                self.shapes.update({s: ops.shape_of(e, self.shapes) for s, e in numpy_steps})
                steps.append(("numpy", symbol, expr))
                continue
            steps += [("numpy", s, e) for s, e in numpy_steps]
            statement = _Statement(symbol, reduced, kind, shape)
            if steps and isinstance(steps[-1], _Group) and steps[-1].domain == domain:
                steps[-1].statements.append(statement)
            else:
                steps.append(_Group(domain, [statement]))
        return steps

    # -- kernels ---------------------------------------------------------------------------------
    def _index(self, shape: tuple, domain: tuple, row: bool) -> str | None:
        """How a kernel reads an array of ``shape`` at element (_i, _j), or at row _i."""
        rows, cols = domain
        if not shape:
            return None
        first = {rows: "_i", sympy.S.One: "0"}
        last = {sympy.S.One: "0"} if row else {cols: "_j", sympy.S.One: "0"}
        if len(shape) == 1:
            return (first if row else last)[shape[0]]
        return f"{first[shape[0]]}, {last[shape[1]]}"

    def emit(self, group: _Group, keep: set, names: dict) -> list[str]:
        """The kernel of ``group`` (added to the module) and the lines that call it."""
        kernel = _RowKernel(self, group, keep)
        fname = f"_rows{next(self.kernels)}"
        doc = f"{self.spec.name}: {', '.join(s.symbol.name for s in group.statements)}, row by row."
        self.definitions += _kernel_def(fname, kernel.params(), kernel.body(), doc)
        return kernel.call(fname, NumpyLayerPrinter(names))

    def method(self, pairs, keep: set, names: dict, returns: list[str]) -> list[str]:
        """Body lines of ``forward`` or ``backward`` from its statements."""
        steps = self.plan(pairs)
        lines: list[str] = []
        printer = NumpyLayerPrinter(names)
        reserved = set(scaffold.names_of(self.d)) | {s.name for s, _ in pairs} | {"dout"}
        for k, step in enumerate(steps):
            if isinstance(step, _Group):
                later = set().union(*(_uses(s) for s in steps[k + 1:])) if k + 1 < len(steps) else set()
                lines += self.emit(step, keep | later, names)
            else:
                _, symbol, expr = step
                lines += self._numpy_lines(symbol, expr, printer, reserved)
        return scaffold.guarded(lines, pairs) + returns

    def _numpy_lines(self, symbol, expr, printer, reserved) -> list[str]:
        """A statement numpy computes; a matrix product of named arrays writes into a kept buffer."""
        a, b = expr.args if isinstance(expr, ops.Matmul) else (None, None)
        named = all(isinstance(x, sympy.Symbol) or (isinstance(x, ops.Transposed) and isinstance(x.args[0], sympy.Symbol))
                    for x in (a, b)) if a is not None else False
        target = printer.doprint(symbol)
        if not named:
            return scaffold.statements([(symbol, expr)], printer, reserved)
        left, right = printer.doprint(a), printer.doprint(b)
        out = (f'_fused.buffer(self._buffers, "{symbol.name}", ({left}.shape[0], {right}.shape[1]), '
               f"np.result_type({left}, {right}))")
        return [f"{target} = np.matmul({left}, {right}, out={out})"]

    def forward(self) -> list[str]:
        d, spec, cg = self.d, self.spec, scaffold
        pairs = cg.forward_pairs(d)
        params = cg.param_refs(spec)
        dims = cg.forward_dims(d, pairs)
        head = cg.dim_bindings(spec, [x for x in dims if x in spec.dims], params) + cg.onehot_labels(spec)
        head += [f"self.{c} = None" for c in d.cache_names]
        stored = [*d.cache_names, *(x.name for x in d.dims_used)]
        keep = {c.symbol for c in d.cache} | {spec.output}
        tail = [f"self.{n} = {n}" for n in stored] + [f"return {spec.output.name}"]
        return head + self.method(pairs, keep, dict(params), tail)

    def backward(self) -> list[str]:
        d, spec, cg = self.d, self.spec, scaffold
        names = {c.symbol: f"self.{c.symbol.name}" for c in d.cache}
        names.update({s: f"self.{s.name}" for s in d.dims_used})
        names.update(cg.param_refs(spec))
        names.update(cg.grad_refs(spec))
        pairs = [(c.symbol, c.expr) for c in d.recompute] + list(d.steps)
        grads = {f"d{n}" for n in spec.input_names} | {f"d{p.name}" for p in spec.params}
        keep = {s for s, _ in d.steps if s.name in grads}
        returns = [f"return {', '.join(f'd{n}' for n in spec.input_names)}"]
        handed_out = {f"d{n}" for n in spec.input_names} | set(cg.grad_refs(spec).values())
        release = [f"{ref} = None" for ref in dict.fromkeys(cg.grad_refs(spec).values())]  # their buffers may be reused
        return release + [cg.fresh_gradient(line, handed_out) for line in self.method(pairs, keep, names, returns)]


def _uses(step) -> set:
    if isinstance(step, _Group):
        return set().union(*(s.expr.free_symbols for s in step.statements))
    return set(step[2].free_symbols)


class _RowKernel:
    """One kernel over the rows of a domain ``(R, C)``: for each row ``_i`` (on all cores), the
    row reductions it needs (each a loop over ``_j`` in the L1 cache), then one loop writing the
    row's elements; sums over everything leave one partial sum per row."""

    def __init__(self, builder: _RowBuilder, group: _Group, keep: set):
        self.b = builder
        self.domain = group.domain
        self.group = group
        defined = {s.symbol for s in group.statements}
        self.outputs = [s for s in group.statements if s.kind != "total" and s.symbol in keep]
        self.totals = [s for s in group.statements if s.kind == "total"]
        reads = set().union(*(s.expr.free_symbols for s in group.statements)) - defined
        self.reads = sorted(reads, key=lambda s: s.name)
        self.arrays = [s for s in self.reads if builder.shapes.get(s, ())]
        self.partials: list[tuple[str, sympy.Basic]] = []  # (name, full reduction)
        self.lines: list[str] = []
        self._emit()

    def params(self) -> list[str]:
        return (["_rows", "_cols"] + [_param(s, self.b.shapes) for s in self.reads]
                + [f"_o_{s.symbol.name}" for s in self.outputs] + [name for name, _ in self.partials]
                + (["_scratch"] if self.slots else []))

    def body(self) -> list[str]:
        work = [INDENT + "_w = _scratch[nb.get_thread_id()]"] if self.slots else []
        return ["for _i in nb.prange(_rows):", *work, *[INDENT + line for line in self.lines]]

    # -- the loop body ---------------------------------------------------------------------------
    def _emit(self) -> None:
        self.subs: dict = {}        # elementwise values not kept: inlined where used
        self.row_values: dict = {}  # row reductions already computed in this row: atom -> name
        self.exponentials: dict = {}  # log-sum-exp name -> (its work row's element, the row's sum, 1/sum)
        self.aliases: dict = {}  # symbols standing for printed text (a work row's element)
        self.written: set = set()   # kept elementwise values already stored for this row
        self.pending: list[str] = []     # the body of the next loop over the row
        self.after: list[str] = []       # ... the lines after it (reductions of its work rows)
        self.pending_syms: set = set()   # kept values the next loop computes
        self.unfinished: set = set()     # reductions the next loop computes
        self.total_exprs: dict = {}
        self.slots = 0                   # work rows of the reductions
        self.counter = itertools.count()
        for s in self.group.statements:
            expr = s.expr.xreplace(self.subs)
            if s.kind == "elem" and s not in self.outputs:
                self.subs[s.symbol] = expr
            elif s.kind == "elem":
                expr = self._rowwise(expr)
                self._wait_for(expr)
                self.pending.append(f"{s.symbol.name} = {self._print(expr, row=False)}")
                self.pending.append(f"_o_{s.symbol.name}[_i, _j] = {s.symbol.name}")
                self.pending_syms.add(s.symbol)
            elif s.kind == "row":
                expr = self._rowwise(expr)
                self._wait_for(expr)
                self._flush()
                self.lines.append(f"{s.symbol.name} = {self._print(expr, row=True)}")
                self.row_values[s.symbol] = s.symbol.name
                if s in self.outputs:
                    self.lines.append(f"_o_{s.symbol.name}[{'_i, 0' if len(s.shape) == 2 else '_i'}] = {s.symbol.name}")
            else:
                self.total_exprs[s.symbol] = expr
                self._total(expr)
        self._flush()

    def _flush(self) -> None:
        """Write out the pending loop over the row (one pass over its elements)."""
        if self.pending:
            self.lines += ["for _j in range(_cols):", *[INDENT + line for line in self.pending]]
        self.lines += self.after
        self.written |= self.pending_syms
        self.pending, self.after, self.pending_syms, self.unfinished = [], [], set(), set()

    def _wait_for(self, expr) -> None:
        """Close the pending loop if ``expr`` needs a reduction that loop computes."""
        if {s.name for s in expr.free_symbols} & self.unfinished:
            self._flush()

    def _loop(self, reduce: str, name: str, element) -> str:
        """``name = reduce(element over the row)``: the pending loop writes the elements to a
        work row of this thread (SIMD, exact functions), ``row_sum``/``row_max`` reduce it in
        float64 and the result is rounded to the kernel's dtype; returns the row reduced."""
        self._wait_for(element)
        row = self._row_of(element)
        if row is None:
            row = f"_w[{self.slots}]"
            self.pending.append(f"{row[:-1]}, _j] = {self._print(element, row=False)}")
            self.slots += 1
        self.after.append(f"{name} = _F(_fused.{reduce}({row}, _cols))")
        self.unfinished.add(name)
        return row

    def _row_of(self, element) -> str | None:
        """Row ``_i`` of an array already in memory, when ``element`` is one (no copy needed)."""
        if not isinstance(element, sympy.Symbol) or element in self.pending_syms:
            return None
        if element in self.written:
            return f"_o_{element.name}[_i]"
        if element in self.reads and tuple(self.b.shapes.get(element, ())) == tuple(self.domain):
            return f"_a_{element.name}[_i]"
        return None

    def _reduce(self, kind: type, element) -> str:
        """A row reduction of ``element``; returns the local name of its value."""
        key = (kind, element)
        if key in self.row_values:
            return self.row_values[key]
        n = next(self.counter)
        name = f"_r{n}"
        if kind in (ops.ReduceMax,) or kind is max:
            self._loop("row_max", name, element)
        elif kind is ops.LogSumExp:
            top = sympy.Symbol(self._reduce(max, element), real=True)
            self._wait_for(top)
            row = self._loop("row_sum", f"_s{n}", sympy.exp(element - top))
            self.after.append(f"{name} = {top} + _fused.log_(_s{n})")
            self.exponentials[name] = (f"{row[:-1]}, _j]", f"_s{n}", f"_q{n}")
        else:
            self._loop("row_sum", name, element)
            if kind is ops.ReduceMean:
                self.after.append(f"{name} = _F({name} / _cols)")
        self.unfinished.add(name)
        self.row_values[key] = name
        return name

    def _rowwise(self, expr):
        """``expr`` with each reduction along the rows replaced by its value for row ``_i``;
        a softmax reuses the exponentials its log-sum-exp summed: ``exp(a - max) / sum``."""
        if isinstance(expr, sympy.exp) and isinstance(expr.args[0], ops.LogSoftmax):
            expr = ops.Softmax(*expr.args[0].args)  # y = exp(log_softmax(a)), as the numpy code writes it
        if isinstance(expr, _ROW_ATOMS) and self.b._axes(expr) == (1,):
            inner = self._rowwise(expr.args[0])
            if isinstance(expr, (ops.Softmax, ops.LogSoftmax)):
                name = self._reduce(ops.LogSumExp, inner)
                lse = sympy.Symbol(name, real=True)
                if isinstance(expr, ops.LogSoftmax):
                    return inner - lse
                if name not in self.exponentials:
                    return sympy.exp(inner - lse)
                return self._share_of(name)
            return sympy.Symbol(self._reduce(type(expr), inner), real=True)
        if not expr.args or isinstance(expr, sympy.Symbol):
            return expr
        return expr.func(*[self._rowwise(a) for a in expr.args])

    def _share_of(self, lse: str):
        """``exp(a - lse)`` for the row of ``lse``: its work row's ``exp(a - max)`` times one
        over their sum (computed once per row), instead of a second exponential."""
        element, total, reciprocal = self.exponentials[lse]
        share = sympy.Symbol(element, real=True), sympy.Symbol(reciprocal, real=True)
        if share[1] not in self.aliases:
            line = f"{reciprocal} = _F(1) / {total}"
            if total in self.unfinished:  # the sum comes after the pending loop, and so does this
                self.after.append(line)
                self.unfinished.add(reciprocal)
            else:
                self.lines.append(line)
        self.aliases.update({s: s.name for s in share})
        return share[0] * share[1]

    def _total(self, expr) -> None:
        """Partial sums per row of every reduction over all elements in ``expr``."""
        for atom in sorted(expr.atoms(*_TOTALS), key=sympy.default_sort_key):
            if self.b._axes(atom) != (0, 1):
                continue
            name = f"_p{len(self.partials)}"
            kind = ops.ReduceMax if isinstance(atom, ops.ReduceMax) else ops.ReduceSum
            value = self._reduce(kind, self._rowwise(atom.args[0]))
            self.after.append(f"{name}[_i] = {value}")
            self.partials.append((name, atom))

    def _print(self, expr, row: bool) -> str:
        names = {}
        for s in expr.free_symbols:
            if s in self.aliases:
                names[s] = self.aliases[s]
            elif s in self.pending_syms:
                names[s] = s.name
            elif s in self.written:
                names[s] = f"_o_{s.name}[_i, _j]"
            elif s in self.row_values:
                names[s] = self.row_values[s]
            elif s in self.b.shapes and self.b.shapes[s]:
                names[s] = f"_a_{s.name}[{self.b._index(tuple(self.b.shapes[s]), self.domain, row)}]"
            elif s in self.reads:
                names[s] = f"_s_{s.name}"
        return FusedPrinter(names).doprint(expr)

    # -- the call -------------------------------------------------------------------------------
    def call(self, fname: str, printer: NumpyLayerPrinter) -> list[str]:
        refs = {s: printer.doprint(s) for s in self.reads}
        lines = [f"_shape, _dtype = _fused.domain({', '.join(refs[s] for s in self.arrays)})"]
        for s in self.outputs:
            shape = {"elem": "_shape", "row": "(_shape[0], 1)" if len(s.shape) == 2 else "(_shape[0],)"}[s.kind]
            dtype = "np.bool_" if _is_boolean(s.expr) else "_dtype"
            lines.append(_store(s.symbol.name, s.symbol.name, shape, dtype))
        lines += [_store(name, name, "(_shape[0],)", "_dtype") for name, _ in self.partials]
        if self.slots:
            lines.append(f"_scratch = _fused.scratch(self._buffers, {self.slots}, _shape[1], _dtype)")
        args = ["_shape[0] * _shape[1]", "_shape[0]", "_shape[1]", *[refs[s] for s in self.reads],
                *[s.symbol.name for s in self.outputs], *[name for name, _ in self.partials],
                *(["_scratch"] if self.slots else []), "_fused.like(_dtype)"]
        lines.append(f"{fname}({', '.join(args)})")
        lines += [f"{printer.doprint(s.symbol)} = {s.symbol.name}" for s in self.outputs
                  if printer.doprint(s.symbol) != s.symbol.name]
        for s in self.totals:
            lines.append(f"{printer.doprint(s.symbol)} = {self._total_text(self.total_exprs[s.symbol], printer)}")
        return lines

    def _total_text(self, expr, printer) -> str:
        """The scalar after the kernel: each reduction over everything from its partial sums."""
        values = {}
        for name, atom in self.partials:
            placeholder = sympy.Symbol(f"_total_{name}", real=True)
            values[atom] = placeholder
            size = "" if not isinstance(atom, ops.ReduceMean) else " / (_shape[0] * _shape[1])"
            reduce = "np.max" if isinstance(atom, ops.ReduceMax) else "np.sum"
            printer.names[placeholder] = f"({reduce}({name}){size})"
        return printer.doprint(expr.xreplace(values))


def _param(symbol, shapes) -> str:
    return f"_a_{symbol.name}" if shapes.get(symbol, ()) else f"_s_{symbol.name}"


def _is_boolean(expr) -> bool:
    """A comparison or a logical combination (not a plain symbol: SymPy counts every Symbol as
    a Boolean, so a gradient aliased to another, ``dy = dd``, was once stored as a mask)."""
    return isinstance(expr, (sympy.core.relational.Relational, sympy.logic.boolalg.BooleanFunction,
                             sympy.logic.boolalg.BooleanAtom))
