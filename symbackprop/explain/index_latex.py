r"""Index notation, typeset: the atoms of :mod:`symbackprop.indexed` as the sums people write.

A statement of an index layer is written entry by entry, its left side read at the
positions its atoms write through, as ``symbackprop derive`` prints it:

.. code-block:: latex

    y_{n f i j} &= b_{f} + \sum_{c,k,l} x_{n,c,\,i \mathrm{stride} + k - \mathrm{pad},\,\ldots}\, W_{f c k l} \\
    \frac{\partial L}{\partial x_{n,c,\,i \mathrm{stride} + k - \mathrm{pad},\,\ldots}}
        &\mathrel{+}= \sum_{f} \frac{\partial L}{\partial y_{n f i j}}\, W_{f c k l}

Notation:

* a read ``a[p_1, ..., p_k]`` is ``a_{p_1 ... p_k}``: plain one-letter indices side by side
  (``W_{f c k l}``), otherwise separated by commas, a thin space before a compound
  position; a name that has a subscript of its own is parenthesized (``(W_{1})_{f c k l}``);
* a gradient's entry is ``\frac{\partial L}{\partial x_{...}}``;
* ``sum`` names the indices it reduces (``\sum_{c,k,l}``), ``max`` likewise; an index no
  read gives the range of carries it (``\max_{k < \mathrm{pool\_h},\, l < \mathrm{pool\_w}}``);
* hyperparameters are upright names (``\mathrm{stride}``, ``\mathrm{pad}``);
* a statement that writes through positions that are not plain indices is a scatter-add,
  ``\mathrel{+}=`` over every index of its ranges (writes outside the array are dropped;
  reads outside an array are zero);
* the window max's gradient goes to the first arg-max, in row-major order of the reduced
  indices: ``\frac{\partial L}{\partial y_{n c i j}}\, \mathbf{1}\left[(k, l) =
  \operatorname{first\,arg\,max}_{(k', l')} x_{\ldots k' \ldots l' \ldots}\right]``.

An atom inside an expression whose other atoms write elsewhere (never a bundled
declaration) is printed as the array it makes: ``\left[\ldots\right]_{n t u}``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import sympy

from .. import indexed
from .tex import tex_name

#: The positions an atom writes through (its target).
Target = tuple


class Primed(indexed.Index):
    """A bound index primed (``k'``): the variable of an arg-max beside the index it names."""


def target(atom: sympy.Basic) -> Target:
    """The positions ``atom`` writes through: an :class:`~symbackprop.indexed.IndexSum`'s
    output map, an :class:`~symbackprop.indexed.IndexMax`'s plain indices, the positions
    an :class:`~symbackprop.indexed.IndexMaxGrad` sends the gradient to."""
    if isinstance(atom, (indexed.IndexSum, indexed.IndexTake)):
        return tuple(atom.out_map)
    return tuple(atom.args[2])  # IndexMax: its output map; IndexMaxGrad: its operand's map


def written(atom: sympy.Basic) -> set:
    """The indices the positions of ``atom``'s target name."""
    return set(sympy.Tuple(*target(atom)).atoms(indexed.Index))


def reduced(atom: sympy.Basic) -> list[indexed.Index]:
    """The indices ``atom`` sums or maximizes over, in the order of its ranges."""
    if isinstance(atom, indexed.IndexMaxGrad):
        plain = set(atom.args[3])
        return [i for i, _ in atom.ranges if i not in plain]
    out = written(atom)
    return [i for i, _ in atom.ranges if i not in out]


def is_plain(positions: Sequence) -> bool:
    """Every position a bare index (a gather's left side), none twice."""
    return all(isinstance(p, indexed.Index) for p in positions) and len(set(positions)) == len(positions)


def groups(value: sympy.Expr) -> list[tuple[Target | None, sympy.Expr]]:
    """``value``'s terms grouped by the positions their atoms write through, in order of
    appearance; terms without atoms (or whose atoms write elsewhere) are the ``None`` group, first."""
    found: dict[Target | None, list] = {}
    for term in sympy.Add.make_args(value):
        targets = {target(a) for a in term.atoms(*indexed.INDEX_ATOMS)}
        found.setdefault(targets.pop() if len(targets) == 1 else None, []).append(term)
    order = sorted(found, key=lambda t: t is not None)
    return [(t, sympy.Add(*found[t])) for t in order]


def _has_subscript(tex: str) -> bool:
    return re.search(r"_\{[^{}]*\}$|_[A-Za-z0-9]$", tex) is not None


class IndexNotation:
    """The index atoms for :class:`~symbackprop.explain.arrays_latex.ArrayLatexPrinter`
    (a mixin: one ``_print_X`` per atom, SymPy printer style).

    The printer's ``inside`` is the target of the statement being printed (``None`` outside
    one): an atom writing through it prints as its entry; any other as the array it makes.
    ``of`` maps each gradient symbol to the LaTeX of the value it is the gradient of.
    """

    names: dict
    of: dict
    constants: set
    inside: Target | None = None
    #: While a gather prints: its integer constant and the constant's map (``x_{n t}``).
    taking: tuple | None = None

    # reads
    def _position(self, p: sympy.Expr) -> str:
        """An affine position, strided index first: ``i\\,\\mathrm{stride} + k - \\mathrm{pad}``, ``2 i + k``,
        ``2 \\mathrm{s}\\, o + k + 1 - \\mathrm{off}``."""
        if isinstance(p, indexed.Index):
            return self._print(p)
        if self.taking is not None and p == self.taking[0]:  # a gathered position: x_{n t}
            return self._entry(self._print(p), self.taking[1])
        terms, const = indexed.affine(p, "")
        parts = [self._term(i, c) for i, c in sorted(terms, key=lambda t: t[1] == 1)]
        parts += sorted(sympy.Add.make_args(const) if const != 0 else (), key=lambda t: (t.is_number, str(t)))
        text = parts[0] if isinstance(parts[0], str) else self._print(parts[0])
        for t in parts[1:]:
            if isinstance(t, str):
                text += f" + {t}"
            else:
                text += f" - {self._print(-t)}" if t.could_extract_minus_sign() else f" + {self._print(t)}"
        return text

    def _term(self, i: indexed.Index, c: sympy.Expr) -> str:
        """``k``, ``2 i``, ``i\\,\\mathrm{stride}``, ``2 \\mathrm{s}\\, o``."""
        if c == 1:
            return self._print(i)
        if c.is_Number:
            return f"{self._print(c)} {self._print(i)}"
        if isinstance(c, sympy.Symbol):
            return rf"{self._print(i)}\,{self._print(c)}"
        return rf"{self.wrap(c) if isinstance(c, sympy.Add) else self._print(c)}\, {self._print(i)}"

    def _subscript(self, positions: Sequence) -> str:
        texts = [self._position(p) for p in positions]
        if all(isinstance(p, indexed.Index) and len(t) == 1 for p, t in zip(positions, texts)):
            return " ".join(texts)
        return ",".join(t if isinstance(p, indexed.Index) else r"\," + t for p, t in zip(positions, texts))

    def _entry(self, name: str, positions: Sequence) -> str:
        base = rf"\left({name}\right)" if _has_subscript(name) else name
        return f"{base}_{{{self._subscript(positions)}}}"

    def _read(self, operand: sympy.Expr, positions: Sequence) -> str:
        """``operand`` at ``positions``: ``x_{...}``, ``\\frac{\\partial L}{\\partial y_{...}}``;
        a scalar multiple of an array read as the multiple of its entry."""
        if operand in self.of:
            return rf"\frac{{\partial L}}{{\partial {self._entry(self.of[operand], positions)}}}"
        if isinstance(operand, sympy.Symbol):
            return self._entry(self._print(operand), positions)
        arrays_ = [s for s in operand.free_symbols if self.is_array(s)]
        c, rest = operand.as_independent(*arrays_, as_Add=False)
        if isinstance(rest, sympy.Symbol) and c != 1:
            return f"{self._outside(c)} {self._read(rest, positions)}"
        return self._entry(rf"\left({self._outside(operand)}\right)", positions)

    def _outside(self, e: sympy.Expr) -> str:
        """``e`` printed as an array expression (outside any statement)."""
        saved, self.inside = self.inside, None
        try:
            return self._print(e)
        finally:
            self.inside = saved

    def _under(self, atom: sympy.Basic, indices: Sequence) -> str:
        """``c,k,l``; ``k < \\mathrm{pool\\_h}`` for an index no read gives the range of."""
        maps = atom.maps if isinstance(atom, indexed.IndexSum) else [atom.args[1 if isinstance(
            atom, indexed.IndexMax) else 2]]
        plain = {p for m in maps for p in m if isinstance(p, indexed.Index)}
        ranges = dict(atom.ranges)
        parts = [self._print(i) if i in plain else rf"{self._print(i)} < {self._print(ranges[i])}" for i in indices]
        return (r",\, " if any(i not in plain for i in indices) else ",").join(parts)

    def _as_entry(self, atom: sympy.Basic, body: str) -> str:
        """The body in a statement writing through the atom's target; else the array it makes."""
        if self.inside == target(atom):
            return body
        return rf"\left[{body}\right]_{{{self._subscript(target(atom))}}}"

    # statements
    def statement(self, lhs: sympy.Symbol, value: sympy.Expr) -> list[tuple[str, str, str]]:
        """``lhs = value`` as ``(left, relation, right)`` lines: one per group of terms
        (:func:`groups`), the left side read at the group's target; the first line ``=``
        unless it scatters, every later one ``\\mathrel{+}=``."""
        if not value.atoms(*indexed.INDEX_ATOMS):
            return [(self._print(lhs), "=", self._print(value))]
        lines = []
        for k, (where, part) in enumerate(groups(value)):
            self.inside = where
            takes = sorted(part.atoms(indexed.IndexTake), key=sympy.default_sort_key)
            self.taking = (takes[0].args[1], takes[0].maps[1]) if takes else None  # a scatter through x
            try:
                left = self._print(lhs) if where is None else self._read(lhs, where)
                relation = "=" if k == 0 and (where is None or is_plain(where)) else r"\mathrel{+}="
                lines.append((left, relation, self._print(part)))
            finally:
                self.inside = self.taking = None
        return lines

    # the atoms
    def _print_IndexSum(self, atom):
        reads = [self._read(a, m) for a, m in zip(atom.args[:atom.operands], atom.maps)]
        body = r"\, ".join(reads)
        over = reduced(atom)
        if over:
            body = rf"\sum_{{{self._under(atom, over)}}} {body}"
        return self._as_entry(atom, body)

    def _print_IndexTake(self, atom):
        """A gather ``W_{x_{n t}, d}`` (forward) or its scatter-add into ``\\frac{\\partial L}{\\partial W_{x_{n t}, d}}``."""
        saved, self.taking = self.taking, (atom.args[1], atom.maps[1])
        try:
            return self._as_entry(atom, self._read(atom.args[0], atom.maps[0]))
        finally:
            self.taking = saved

    def _print_IndexMax(self, atom):
        body = rf"\max_{{{self._under(atom, reduced(atom))}}} {self._read(atom.args[0], atom.args[1])}"
        return self._as_entry(atom, body)

    def _print_IndexMaxGrad(self, atom):
        a, g, a_map, out_map = atom.args[:4]
        over = reduced(atom)
        primed = {i: Primed(i.name + "'") for i in over}
        window = sympy.Tuple(*a_map).xreplace(primed)
        names = [self._print(i) for i in over]
        tuple_ = names[0] if len(over) == 1 else "(" + ", ".join(names) + ")"
        primes = [self._print(primed[i]) for i in over]
        variables = primes[0] if len(over) == 1 else "(" + ", ".join(primes) + ")"
        first = (rf"\mathbf{{1}}\left[{tuple_} = \operatorname{{first\,arg\,max}}_{{{variables}}} "
                 rf"{self._read(a, window)}\right]")
        return self._as_entry(atom, rf"{self._read(g, out_map)}\, {first}")

    def _print_Mul(self, expr):
        """A product of hyperparameters spaced (``\\frac{1}{\\mathrm{pool\\_h}\\,\\mathrm{pool\\_w}}``); any other as SymPy's."""
        if expr.could_extract_minus_sign() or not self._upright(expr):
            return super()._print_Mul(expr)
        num, den = sympy.fraction(expr)
        top, bottom = self._spaced(num), self._spaced(den)
        return top if den == 1 else rf"\frac{{{top}}}{{{bottom}}}"

    def _upright(self, expr: sympy.Expr) -> bool:
        """A positive number times powers of hyperparameters, at least one of them."""
        def factor(f):
            base, exp = f.as_base_exp()
            return f.is_Number and f.is_positive or (base in self.constants and exp.is_Integer)
        return bool(expr.free_symbols & self.constants) and all(factor(f) for f in sympy.Mul.make_args(expr))

    def _spaced(self, e: sympy.Expr) -> str:
        factors = sorted(sympy.Mul.make_args(e), key=lambda f: not f.is_Number)
        return r"\,".join(self._print(f) for f in factors if f != 1) or "1"

    def _print_floor(self, e):
        """A window count's floor division as one fraction: ``\\left\\lfloor \\frac{IH + 2 pad - FH}{stride} \\right\\rfloor``."""
        num, den = sympy.fraction(sympy.together(e.args[0]))
        inner = self._print(num) if den == 1 else rf"\frac{{{self._print(num)}}}{{{self._print(den)}}}"
        return rf"\left\lfloor {inner} \right\rfloor"

    def _print_Primed(self, index):
        return tex_name(indexed.Index(index.name.removesuffix("'"))) + "'"
