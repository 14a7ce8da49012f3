"""The numpy backend's printer: SymPy expressions as fast, numerically stable numpy code.

:class:`NumpyLayerPrinter` is a subclass of SymPy's ``NumPyPrinter``.  Before printing,
the stable rewrites of :mod:`symbackprop.lang.stable` keep float64 results correct in the
tails (``|x|`` up to 1e3): ``log(1 + exp(u))`` as ``np.logaddexp(0, u)``, ``log(1 + u)``
as ``np.log1p``, ``exp(u) - 1`` as ``np.expm1``.  Functions are printed from their row
of the function table (:mod:`symbackprop.lang.functions`).

An ``exp`` that overflows to inf where the expression's limit is still right
(``1/(1 + exp(1000)) = 0``) is allowed: callers evaluate under
``np.errstate(over="ignore")``; the checker compares such forms with mpmath in the tails.

Operand order matters for speed: numpy reuses a temporary array in place when it is
the left operand of the next operation, so products print their compound factors
first and plain names and numbers last (``(1 - y)*y*dout`` allocates one array,
``dout*y*(1 - y)`` two).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import sympy
from sympy.printing.numpy import NumPyPrinter

from .. import indexed, ops
from ..errors import GenerationError
from ..lang.functions import BY_CLASS, NODES, SPECIAL
from ..lang.stable import stable

class NumpyLayerPrinter(NumPyPrinter):
    """Prints expressions of a derivation as numpy code.

    Parameters
    ----------
    names : mapping of Symbol to str, optional
        How to print symbols (``y`` as ``self.y``); default: the symbol's name.
    """

    printmethod = "_numpy_layer_code"
    #: the module ``pi`` and ``e`` are printed from (the framework printers use Python's ``math``)
    constants = "np"

    def __init__(self, names: Mapping[sympy.Symbol, str] | None = None, masks: Collection[sympy.Symbol] = ()):
        super().__init__({"fully_qualified_modules": False, "allow_unknown_functions": False})
        self.names = dict(names or {})
        self.masks = frozenset(masks)  # boolean arrays: multiplied last, after a float array

    def doprint(self, expr, assign_to=None):  # noqa: D102 - see class docstring
        return super().doprint(stable(expr), assign_to)

    def _np(self, name: str) -> str:
        return name if name.startswith(SPECIAL) else f"np.{name}"

    def _print_Symbol(self, s):
        return self.names.get(s, s.name)

    _print_Dummy = _print_Symbol

    def _number(self, text: str) -> str:
        """A numeric constant as printed (the fused backend's kernels give it their dtype)."""
        return text

    def _print_floor(self, e):
        """``floor(p/q)`` of sizes (a window count, ``(L - K)//s + 1``) as ``(p)//(q)``: exact
        integer division, where the generated module has no ``floor`` to call."""
        num, den = sympy.fraction(sympy.together(e.args[0]))
        return f"(({self._print(num)})//({self._print(den)}))"

    def _print_Integer(self, n):
        return self._number(str(int(n)))

    def _print_Rational(self, r):
        return self._number(repr(float(r)))

    def _print_Float(self, f):
        return self._number(repr(float(f)))

    def _print_Pi(self, _):
        return self._number(f"{self.constants}.pi")

    def _print_Exp1(self, _):
        return self._number(f"{self.constants}.e")

    def _print_NumberSymbol(self, n):
        return self._number(repr(float(n)))

    def _constant(self, expr) -> str | None:
        if isinstance(expr, sympy.Expr) and not expr.free_symbols and not expr.is_Number and expr.is_real:
            return self._number(repr(float(expr.evalf(20))))
        return None

    def _print(self, expr, **kwargs):
        constant = self._constant(expr)
        return constant if constant is not None else super()._print(expr, **kwargs)

    def _print_Function(self, e):
        row = BY_CLASS.get(type(e))
        if row is None or row.numpy is None:
            raise GenerationError(f"numpy has no function for '{type(e).__name__}' (in {e})")
        return f"{self._np(row.numpy)}({', '.join(self._print(a) for a in e.args)})"

    def _print_polygamma(self, e):
        """``digamma`` by name; higher orders through a helper that keeps the input's dtype."""
        n, x = e.args
        if n == 0:
            return f"{self._np(SPECIAL + 'digamma')}({self._print(x)})"
        return f"polygamma({self._print(n)}, {self._print(x)})"

    def _print_softplus(self, e):
        return f"{self._np('logaddexp')}(0, {self._print(e.args[0])})"

    def _print_Max(self, e):
        return self._fold(self._np("maximum"), e.args)

    def _print_Min(self, e):
        return self._fold(self._np("minimum"), e.args)

    def _fold(self, fn: str, args: Sequence) -> str:
        """``fn(fn(a, b), c)``: a binary function over any number of arguments."""
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{fn}({text}, {self._print(a)})"
        return text

    # -- array atoms (see ops.py) -------------------------------------------------
    def _operand(self, e) -> str:
        return self._print(e) if isinstance(e, (sympy.Symbol, ops.ArrayOp)) else f"({self._print(e)})"

    def _print_Matmul(self, e):
        a, b = e.args
        left = self._print(a) if isinstance(a, ops.Matmul) else self._operand(a)
        right = self._operand(b) if not isinstance(b, ops.Matmul) else f"({self._print(b)})"
        return f"{left} @ {right}"

    def _print_Transposed(self, e):
        a = e.args[0]
        return f"({self._print(a)}).T" if isinstance(a, ops.Matmul) else f"{self._operand(a)}.T"

    def _axis(self, axes) -> str:
        values = [int(a) for a in axes]
        return "None" if not values else str(values[0]) if len(values) == 1 else str(tuple(values))

    def _reduction(self, fn: str, e) -> str:
        keep = ", keepdims=True" if e.keepdims else ""
        axis = f", axis={self._axis(e.args[1])}" if len(e.args[1]) else ""
        return f"{self._np(fn)}({self._print(e.args[0])}{axis}{keep})"

    def _print_ReduceSum(self, e):
        return self._reduction("sum", e)

    def _print_ReduceMean(self, e):
        return self._reduction("mean", e)

    def _print_ReduceMax(self, e):
        return self._reduction("max", e)

    def _print_LogSumExp(self, e):
        return f"logsumexp({self._print(e.args[0])}, axis={self._axis(e.args[1])}, keepdims={e.keepdims})"

    def _print_Softmax(self, e):
        return f"softmax({self._print(e.args[0])}, axis={int(e.args[1])})"

    def _print_LogSoftmax(self, e):
        return f"log_softmax({self._print(e.args[0])}, axis={int(e.args[1])})"

    def _print_ExpandDims(self, e):
        return f"{self._np('expand_dims')}({self._print(e.args[0])}, {self._axis(e.args[1])})"

    def _print_BroadcastTo(self, e):
        shape = ", ".join(self._print(d) for d in e.args[1])
        if e.args[0].is_Number:  # a gradient no output reaches: zeros in dout's floating dtype
            return self._filled(f"({shape},)", e.args[0])
        return self._spread(self._print(e.args[0]), f"({shape},)")

    def _spread(self, array: str, shape: str) -> str:
        """``array`` broadcast to ``shape``, a fresh array."""
        return f"{self._np('broadcast_to')}({array}, {shape}).copy()"

    def _filled(self, shape: str, value) -> str:
        """An array of ``shape`` holding the number ``value``, in the floating dtype of ``dout``
        (a Python number for a loss: float64)."""
        return f"{self._np('full')}({shape}, {self._print(sympy.Float(value))}, dtype={self._np('result_type')}(dout, 0.0))"

    # -- index atoms (see indexed.py): windows, einsum, col2im ------------------------------
    def _letters(self, e) -> dict:
        """einsum's subscripts: the declaration's own index names when they are single letters."""
        names = [i.name for i, _ in e.ranges]
        if all(len(n) == 1 and n.isascii() and n.isalpha() for n in names) and len(set(names)) == len(names):
            return {i: i.name for i, _ in e.ranges}
        return {i: "abcdefghijklmnopqrstuvwxyz"[k] for k, (i, _) in enumerate(e.ranges)}

    def _size(self, d) -> str:
        """A size: ``(IH + 2*pad - FH)//stride + 1`` for a window count."""
        return ops.size_text(d, self._print)

    def _tuple(self, items) -> str:
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    def _windowed(self, positions, ranges: dict, letters: dict):
        """How a map reads: per axis the subscript letter, and the windows (axis, outer, window,
        stride, offset) that ``_windows`` / ``_unwindows`` take."""
        subs, windows = [], []
        for axis, p in enumerate(positions):
            terms, const = indexed.affine(p, "")
            if len(terms) == 1 and terms[0][1] == 1 and const == 0:
                subs.append(letters[terms[0][0]])
                continue
            outer = next((i for i, c in terms if c != 1), terms[-1][0] if len(terms) == 1 else terms[0][0])
            inner = [i for i, _ in terms if i != outer]
            subs.append(letters[outer])
            windows.append((axis, outer, inner[0] if inner else None, dict(terms)[outer], -const))
        return subs + [letters[w[2]] for w in windows if w[2] is not None], windows

    def _window_args(self, windows, ranges: dict) -> str:
        """``axes, sizes, strides, pads`` of the windows helpers."""
        axes = self._tuple([str(w[0]) for w in windows])
        sizes = self._tuple([self._size(ranges[w[2]]) if w[2] is not None else "1" for w in windows])
        strides = self._tuple([self._print(w[3]) for w in windows])
        pads = self._tuple([self._print(w[4]) for w in windows])
        return f"{axes}, {sizes}, {strides}, {pads}"

    def _read(self, operand, positions, ranges, letters) -> tuple[str, str, list]:
        """The text of a read through its windows, its subscripts, and the windows."""
        subs, windows = self._windowed(positions, ranges, letters)
        text = self._print(operand) if isinstance(operand, sympy.Symbol) else f"({self._print(operand)})"
        if windows:
            text = f"_windows({text}, {self._window_args(windows, ranges)})"
        return text, "".join(subs), windows

    def _contract(self, reads: list[tuple[str, str]], target: str) -> str:
        """The reads (text, subscripts) multiplied and summed down to ``target``'s subscripts:
        the operand itself or ``np.sum`` over one; ``np.einsum`` with the declaration's own index
        letters for more (``optimize=True`` hands the contraction to BLAS through tensordot;
        measured no slower than an explicit ``np.tensordot`` and a transpose here)."""
        def arranged(text: str, have: str) -> str:
            if have == target:
                return text
            return f"{text}.transpose({', '.join(str(have.index(ch)) for ch in target)})"

        if len(reads) == 1:
            text, subs = reads[0]
            summed = [k for k, ch in enumerate(subs) if ch not in target]
            if summed:
                text = f"{self._np('sum')}({text}, axis={self._tuple([str(k) for k in summed])})"
                subs = "".join(ch for ch in subs if ch in target)
            return arranged(text, subs)
        return (f'{self._np("einsum")}("{",".join(s for _, s in reads)}->{target}", '
                f'{", ".join(t for t, _ in reads)}, optimize=True)')

    def _print_IndexSum(self, e):
        letters, ranges = self._letters(e), dict(e.ranges)
        reads = [self._read(a, m, ranges, letters)[:2] for a, m in zip(e.args[:e.operands], e.maps)]
        if e.is_gather:
            return self._to_output(reads, e.out_map, letters)
        subs, windows = self._windowed(e.out_map, ranges, letters)
        present = "".join(ch for ch in subs if any(ch in r for _, r in reads))
        if present != "".join(subs):  # the same for every window offset (a mean's gradient): given once
            if present != "".join(subs[:len(e.out_map)]):
                raise GenerationError(f"cannot print the scatter {e} (an index missing from its operands)")
            subs = list(present)
        cols = self._contract(reads, "".join(subs))
        shape = self._tuple([self._size(d) for d in e.args[-1]])
        if not windows:
            return cols
        return f"_unwindows({cols}, {shape}, {self._window_args(windows, ranges)})"

    def _to_output(self, reads: list[tuple[str, str]], out_map, letters: dict) -> str:
        """The reads contracted to the output's plain indices, an axis of size 1 for an index
        no read names (broadcast)."""
        present = [p for p in out_map if any(letters[p] in subs for _, subs in reads)]
        text = self._contract(reads, "".join(letters[p] for p in present))
        missing = [k for k, p in enumerate(out_map) if p not in present]
        if missing:
            text = f"{self._np('expand_dims')}({text}, {self._tuple([str(k) for k in missing])})"
        return text

    def _print_Block(self, e):
        """``a[:, H:2*H]``: a block of an axis (an LSTM's gate)."""
        start, stop = e.args[2], sympy.expand(e.args[2] + e.args[3])
        first = self._size(start) if start != 0 else ""
        return f"{self._operand(e.args[0])}[{':, ' * int(e.args[1])}{first}:{self._size(stop)}]"

    def _print_Unblock(self, e):
        """A block's gradient placed in zeros of the whole axis."""
        return f"_unblock({self._print(e.args[0])}, {int(e.args[1])}, {self._size(e.args[2])}, {self._size(e.args[3])})"

    def _print_IndexTake(self, e):
        """A gather ``W[x]`` (``W[:, x]`` along a later axis), or its scatter-add ``_add_at``
        (``np.add.at``: repeated indices add up)."""
        letters, c = self._letters(e), e.args[1]
        through = "".join(letters[i] for i in e.maps[1])

        def subs(positions) -> str:
            return "".join(through if p == c else letters[p] for p in positions)

        a = e.args[0]
        text = self._print(a) if isinstance(a, sympy.Symbol) else f"({self._print(a)})"
        if e.is_gather:
            read = f"{text}[{':, ' * e.axis}{self._print(c)}]"
            return self._to_output([(read, subs(e.maps[0]))], e.out_map, letters)
        values = self._contract([(text, subs(e.maps[0]))], subs(e.out_map))
        shape = self._tuple([self._size(d) for d in e.args[-1]])
        return f"_add_at({shape}, {e.axis}, {self._print(c)}, {values})"

    def _pooling(self, e, positions, out_map) -> str | None:
        """The arguments of ``_window_max``/``_window_max_grad`` when the max is over exactly the
        window offsets of its read, in the output's order (pooling): one strided slice per offset,
        no window array."""
        letters, ranges = self._letters(e), dict(e.ranges)
        subs, windows = self._windowed(positions, ranges, letters)
        out = "".join(letters[p] for p in out_map)
        offsets = "".join(letters[w[2]] for w in windows if w[2] is not None)
        if not windows or any(w[2] is None for w in windows) or subs[:len(positions)] != list(out) \
                or "".join(subs[len(positions):]) != offsets or not isinstance(e.args[0], sympy.Symbol):
            return None
        return f"{self._print(e.args[0])}, {self._window_args(windows, ranges)}"

    def _max_parts(self, e, positions, out_map):
        """The windowed read of a max or of its gradient: its text, the output's letters, the
        reduced axes, the letters kept in their order, the read's windows and the ranges."""
        letters, ranges = self._letters(e), dict(e.ranges)
        text, subs, windows = self._read(e.args[0], positions, ranges, letters)
        out = "".join(letters[p] for p in out_map)
        reduced = self._tuple([str(k) for k, ch in enumerate(subs) if ch not in out])
        rest = "".join(ch for ch in subs if ch in out)
        return text, out, reduced, rest, (windows, ranges)

    def _print_IndexMax(self, e):
        pooling = self._pooling(e, e.args[1], e.args[2])
        if pooling is not None:
            return f"_window_max({pooling})"
        text, out, reduced, rest, _ = self._max_parts(e, e.args[1], e.args[2])
        text = f"{self._np('max')}({text}, axis={reduced})"
        return text if rest == out else f'{self._np("einsum")}("{rest}->{out}", {text})'

    def _print_IndexMaxGrad(self, e):
        pooling = self._pooling(e, e.args[2], e.args[3])
        if pooling is not None:
            a, rest = pooling.split(", ", 1)
            return f"_window_max_grad({a}, {self._print(e.args[1])}, {rest})"
        text, out, reduced, rest, (windows, ranges) = self._max_parts(e, e.args[2], e.args[3])
        g = self._print(e.args[1])
        if rest != out:
            g = f'{self._np("einsum")}("{out}->{rest}", {g})'
        routed = f"_to_first_max({text}, {reduced}, {g})"
        if not windows:
            return routed
        shape = self._tuple([self._size(d) for d in e.args[-1]])
        return f"_unwindows({routed}, {shape}, {self._window_args(windows, ranges)})"

    def _print_Relational(self, e):
        return f"({self._print(e.lhs)} {e.rel_op} {self._print(e.rhs)})"

    def _print_And(self, e):
        return "(" + " & ".join(self._print(a) for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " | ".join(self._print(a) for a in e.args) + ")"

    def _print_BooleanTrue(self, _):
        return "True"

    def _print_Piecewise(self, e):
        *branches, (last, cond) = e.args
        if cond != sympy.true:
            raise GenerationError(f"a piecewise expression needs a final 'otherwise' branch: {e}")
        if len(branches) == 1 and branches[0][0] == 1 and last == 0:
            return self._print(branches[0][1])  # an indicator: the boolean mask itself
        text = self._print(last)
        for value, c in reversed(branches):
            text = self._where(self._print(c), self._print(value), text)
        return text

    def _is_mask(self, e: sympy.Basic) -> bool:
        """A boolean mask, alone or as the indicator ``Piecewise((1, mask), (0, True))``."""
        if isinstance(e, sympy.Piecewise) and len(e.args) == 2 and e.args[0][0] == 1 and e.args[1] == (0, True):
            e = e.args[0][1]
        return e in self.masks

    def _where(self, cond: str, value: str, otherwise: str) -> str:
        """``value`` where ``cond`` holds, else ``otherwise``."""
        return f"{self._np('where')}({cond}, {value}, {otherwise})"

    def _print_Pow(self, e, rational=False):
        base, ex = e.args
        b = self.parenthesize(base, sympy.printing.precedence.PRECEDENCE["Pow"])
        if ex.is_Rational and not ex.is_Integer and _sizes_only(base):
            # a root of sizes (attention's 1/sqrt(D)) in Python's arithmetic: a float, not a
            # numpy float64 scalar, which would make float32 arrays float64
            return f"{b}**{self._number(str(float(ex)))}" if ex > 0 else f"{b}**({float(ex)!r})"
        if ex == sympy.S.Half:
            return f"{self._np('sqrt')}({self._print(base)})"
        one = self._number("1")
        if ex == -sympy.S.Half:
            return f"{one}/{self._np('sqrt')}({self._print(base)})"
        if ex.is_Integer and ex < 0:
            return f"{one}/{b}" if ex == -1 else f"{one}/{b}**{-int(ex)}"
        if ex.is_Integer:
            return f"{b}**{int(ex)}"
        return f"{b}**{self.parenthesize(ex, sympy.printing.precedence.PRECEDENCE['Pow'])}"

    def _print_Add(self, e, order=None):
        """Positive terms first (``y - t``, not ``-t + y``); among them numbers and compound
        terms before plain names (``x @ W + b``: numpy adds into the product's buffer)."""
        terms = list(e.args)
        negative = [t for t in terms if t.could_extract_minus_sign()]
        positive = sorted((t for t in terms if t not in negative), key=lambda t: isinstance(t, sympy.Symbol))
        text = self._print(positive[0]) if positive else ""
        for t in positive[1:]:
            text += f" + {self._print(t)}"
        for t in negative:
            inner = self.parenthesize(-t, sympy.printing.precedence.PRECEDENCE["Add"] + 1) \
                if isinstance(-t, sympy.Add) else self._print(-t)
            text = f"{text} - {inner}" if text else f"-{inner}"
        return text

    def _print_Mul(self, e):
        scalars, arrays_ = _split_scalars(e)
        if scalars is not None:  # (y - t)*(dout/N): one pass over the array for all scalars
            prec = sympy.printing.precedence.PRECEDENCE["Mul"]
            return f"{self._print(arrays_)}*({self._print(scalars)})" if isinstance(arrays_, sympy.Mul) \
                else f"{self.parenthesize(arrays_, prec)}*({self._print(scalars)})"
        coeff, factors = e.as_coeff_mul()
        num, den = [], []
        for f in factors:
            if not f.free_symbols:  # fold constant factors such as sqrt(2/pi) into the coefficient
                coeff *= f
            elif isinstance(f, sympy.Pow) and f.exp.is_Integer and f.exp < 0:
                den.append(f.base if f.exp == -1 else sympy.Pow(f.base, -f.exp))
            else:
                num.append(f)
        if coeff.is_Rational and coeff.q != 1 and coeff.p in (1, -1):
            den.insert(0, sympy.Integer(coeff.q))
            coeff = sympy.Integer(coeff.p)
        sign = "-" if coeff.is_negative else ""
        coeff = -coeff if coeff.is_negative else coeff
        prec = sympy.printing.precedence.PRECEDENCE["Mul"]
        # compound factors first, boolean masks last: bool array * Python float is float64
        # (NumPy's rules), so a mask first would turn a float32 gradient into float64
        ordered = sorted(num, key=lambda f: (f.is_Atom or self._is_mask(f), self._is_mask(f)))
        parts = [self.parenthesize(f, prec) for f in ordered]
        if coeff != 1:
            parts.append(self._print(coeff))
        text = "*".join(parts) or self._number("1")
        if den:
            d = "*".join(self.parenthesize(f, prec) for f in den)
            text = f"{text}/{d}" if len(den) == 1 else f"{text}/({d})"
        return f"{sign}{text}"


def _split_scalars(e: sympy.Mul) -> tuple[sympy.Expr | None, sympy.Expr]:
    """In an array product, the factors known to be scalars (no array variable or atom),
    when there are at least two of them: ``(y - t)*dout/N``, ``2*dvar*xc/N``."""
    is_array = [bool(f.atoms(ops.ArrayVar) or f.atoms(ops.ArrayOp)) for f in e.args]
    if not any(is_array):
        return None, e
    scalars = [f for f, a in zip(e.args, is_array) if not a]
    if len(scalars) < 2 or all(f.is_Number for f in scalars):
        return None, e
    return sympy.Mul(*scalars), sympy.Mul(*[f for f, a in zip(e.args, is_array) if a])


for _row in NODES:  # a row prints from the table unless the printer has a method of its own for it
    if _row.numpy is not None and f"_print_{_row.sympy.__name__}" not in NumpyLayerPrinter.__dict__:
        setattr(NumpyLayerPrinter, f"_print_{_row.sympy.__name__}", NumpyLayerPrinter._print_Function)


#: Module-level helpers for generated code: stable forms of the array atoms, and the
#: functions scipy computes in another dtype than their input's.
HELPERS = {
    "polygamma": '''def polygamma(n, x):
    """scipy.special.polygamma(n, x) in the dtype of x (scipy computes it in float64)."""
    return special.polygamma(n, x).astype(np.result_type(x, np.float32), copy=False)''',
    "softmax": '''def softmax(a, axis):
    """exp(a) / sum(exp(a)), shifted by the maximum so that exp cannot overflow."""
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)''',
    "log_softmax": '''def log_softmax(a, axis):
    """log(softmax(a)) without forming softmax: a - max - log(sum(exp(a - max)))."""
    shifted = a - np.max(a, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))''',
    "_windows": '''def _windows(a, axes, size, stride, pad):
    """The windows a[..., o*stride + k - pad, ...] along axes (k < size; o over the positions that
    fit), zero outside a: numpy's sliding_window_view of the zero-padded array, every stride-th
    window, the offsets k as the last axes.  The book's im2col without the copy."""
    widths = [(0, 0)] * a.ndim
    for ax, p in zip(axes, pad):
        widths[ax] = (p, p)
    if any(pad):
        a = np.pad(a, widths)
    view = np.lib.stride_tricks.sliding_window_view(a, size, axis=axes)
    every = [slice(None)] * a.ndim
    for ax, s in zip(axes, stride):
        every[ax] = slice(None, None, s)
    return view[tuple(every)]''',
    "_unblock": '''def _unblock(g, axis, start, full):
    """g placed at start along axis of zeros of size full there: the gradient of a block
    a[..., start:start + g.shape[axis], ...]."""
    shape = list(g.shape)
    shape[axis] = full
    out = np.zeros(shape, dtype=g.dtype)
    out[(slice(None),) * axis + (slice(start, start + g.shape[axis]),)] = g
    return out''',
    "_add_at": '''def _add_at(shape, axis, where, values):
    """An array of shape, zero but for values added at index where along axis: the gradient of
    a gather a[where] (np.add.at: where an index repeats, its values add up; a fancy-index
    assignment out[where] += values would keep only the last)."""
    out = np.zeros(shape, dtype=np.result_type(values, 0.0))
    np.add.at(out, (slice(None),) * axis + (where,), values)
    return out''',
    "_unwindows": '''def _unwindows(cols, shape, axes, size, stride, pad, dtype=None):
    """The adjoint of _windows: each window cols[..., o, ..., k] added back into an array of
    shape at o*stride + k - pad, dropped outside (the book's col2im: one strided slice per
    window offset, a loop over size only).  cols without the offset axes is the same for
    every offset (a mean's gradient); a function of the offset gives each window's cells."""
    dtype = cols.dtype if dtype is None else dtype
    padded = list(shape)
    for ax, p in zip(axes, pad):
        padded[ax] += 2 * p
    out = np.zeros(padded, dtype=dtype)
    for offset in np.ndindex(*size):
        piece = cols(offset) if callable(cols) else cols[(Ellipsis, *offset)] if cols.ndim > len(shape) else cols
        at = [slice(None)] * len(shape)
        for ax, k, s in zip(axes, offset, stride):
            at[ax] = slice(k, k + s * (piece.shape[ax] - 1) + 1, s)
        out[tuple(at)] += piece
    crop = [slice(None)] * len(shape)
    for ax, p in zip(axes, pad):
        crop[ax] = slice(p, p + shape[ax])
    return out[tuple(crop)]''',
    "_window_max": '''def _window_max(a, axes, size, stride, pad):
    """The maximum of each window of _windows(a, ...) over its offsets: one strided slice
    per window offset (a loop over size only), no window array."""
    windows = _windows(a, axes, size, stride, pad)
    top = windows[(Ellipsis, *(0 for _ in size))].copy()
    for offset in np.ndindex(*size):
        np.maximum(top, windows[(Ellipsis, *offset)], out=top)
    return top''',
    "_window_max_grad": '''def _window_max_grad(a, dout, axes, size, stride, pad):
    """dout sent to the first maximum of each window of _windows(a, ...) (row-major over the
    offsets, as the book's Pooling's np.argmax), added back into an array of a's shape: the
    arg-max routing and col2im in one loop over the window offsets."""
    windows = _windows(a, axes, size, stride, pad)
    top = _window_max(a, axes, size, stride, pad)
    taken = np.zeros(top.shape, dtype=bool)

    def routed(offset):
        hit = windows[(Ellipsis, *offset)] == top
        hit &= ~taken
        taken[...] |= hit
        return np.where(hit, dout, 0)

    return _unwindows(routed, a.shape, axes, size, stride, pad, np.result_type(a, dout))''',
    "_to_first_max": '''def _to_first_max(windows, axes, dout):
    """dout sent to the first maximum of each window (the window is along axes of windows, the
    other axes are dout's): the arg-max routing of the book's Pooling.backward."""
    last = tuple(range(-len(axes), 0))
    moved = np.moveaxis(windows, axes, last)
    flat = moved.reshape(*moved.shape[:-len(axes)], -1)
    routed = np.zeros(flat.shape, dtype=np.result_type(windows, dout))
    np.put_along_axis(routed, np.argmax(flat, axis=-1)[..., None], dout[..., None], axis=-1)
    return np.moveaxis(routed.reshape(moved.shape), last, axes)''',
    "logsumexp": '''def logsumexp(a, axis, keepdims):
    """log(sum(exp(a))), shifted by the maximum so that exp cannot overflow."""
    top = np.max(a, axis=axis, keepdims=True)
    out = top + np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)''',
}


def _sizes_only(expr: sympy.Expr) -> bool:
    """An expression of array sizes (integer symbols) and numbers alone."""
    return bool(expr.free_symbols) and all(s.is_integer and not isinstance(s, ops.ArrayVar)
                                           for s in expr.free_symbols)
