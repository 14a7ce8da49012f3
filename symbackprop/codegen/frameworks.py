"""What the framework backends (torch, jax) share: a derivation as one custom-gradient op.

A layer becomes a function of its inputs, parameters and constants (in that order),
whose forward computes the graph's nodes and keeps *exactly* the derivation's cache
(plus the parameters its backward reads, which the caller holds anyway), and whose
backward computes the derived gradients from that cache:

.. math:: \\bar{x}_i = \\text{dout}\\cdot \\frac{\\partial y}{\\partial x_i}
          \\quad\\text{(written in cached values: } y(1 - y) \\text{ for sigmoid)}

:class:`Op` holds the printed statements; each backend wraps them in its framework's
mechanism (``torch.autograd.Function``, ``jax.custom_vjp``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy

from ..derivation.model import Derivation
from ..errors import GenerationError
from ..spec.model import DOUT
from . import scaffold
from .numpy import NumpyLayerPrinter


@dataclass
class Op:
    """One layer as a custom-gradient op, its statements printed for one framework.

    Attributes
    ----------
    inputs, params, constants : list of str
        The op's arguments, in this order (constants get no gradient).
    saved : list of str
        Arrays the forward keeps for the backward: the cache, then parameters it reads.
    dims : list of str
        Sizes (``N``) the backward divides by, kept as Python ints.
    bindings, labels, statements : list of str
        The forward in three parts: sizes read off the arguments (``N = x.shape[0]``),
        integer labels made one-hot rows, then the statements computing ``output`` and the cache.
    backward : list of str
        Statements computing ``d<name>`` for every input and parameter from ``dout``.
    output : str
    intermediate : bool
        Whether a saved array is neither an argument, the output, nor a boolean mask:
        it has no graph to the arguments, so a torch double backward recomputes it from
        them (:func:`symbackprop.codegen.torch.recompute_lines`).
    recorded : list of str, optional
        The statements again for code that autograd records (a double backward's
        recomputation): ``statements`` may continue in place in a temporary that autograd
        would keep; None: ``statements`` themselves.
    """

    inputs: list[str]
    params: list[str]
    constants: list[str]
    saved: list[str]
    dims: list[str]
    bindings: list[str]
    labels: list[str]
    statements: list[str]
    backward: list[str]
    output: str
    intermediate: bool
    recorded: list[str] | None = None

    @property
    def arguments(self) -> list[str]:
        return [*self.inputs, *self.params, *self.constants]

    @property
    def forward(self) -> list[str]:
        """The whole forward: bindings, labels, statements."""
        return [*self.bindings, *self.labels, *self.statements]

    @property
    def recorded_statements(self) -> list[str]:
        """The statements as autograd may record them (none in place)."""
        return self.statements if self.recorded is None else self.recorded

    @property
    def recorded_forward(self) -> list[str]:
        """The whole forward as autograd may record it."""
        return [*self.bindings, *self.labels, *self.recorded_statements]

    @property
    def kept(self) -> list[str]:
        """Saved arrays the forward computes (neither an argument nor the output): intermediates and masks."""
        return [n for n in self.saved if n not in {*self.arguments, self.output}]

    @property
    def gradients(self) -> list[str]:
        """What the backward returns: one gradient per argument, ``None`` for constants."""
        return [*(f"d{n}" for n in (*self.inputs, *self.params)), *("None" for _ in self.constants)]


Printer = Callable[[dict], NumpyLayerPrinter]


@dataclass
class Branches:
    """What a backend's ``kernels`` may return for the backward: the statements ``fast``
    (a kernel's) where ``condition`` (a line of the framework's code) holds, and the
    derived ``formula`` otherwise (torch: a kernel whose own derivative does not apply
    here, and the formula under ``create_graph=True``)."""

    condition: str
    fast: list
    formula: list


def check_names(derivation: Derivation, reserved: frozenset[str], backend: str) -> None:
    """Refuse declarations the op cannot express: networks, names the module uses itself."""
    spec = derivation.spec
    if spec.predict is not None:
        raise GenerationError(f"the {backend} backend does not generate networks (predict declared) yet: "
                              "use --backend numpy, or declare the layers one by one")
    for name in scaffold.names_of(derivation):
        if name in reserved:
            raise GenerationError(f"'{name}' cannot appear in {backend} code (it names a module or the "
                                  "context there): rename it in the declaration")


def build(derivation: Derivation, printer: Printer, eye: str, zeros: str,
          kernels: Callable[..., list] | None = None, recorded_printer: Printer | None = None) -> Op:
    """The op of ``derivation`` with statements printed by ``printer({symbol: name})``.

    ``kernels``, when given, rewrites the ``(name, expression)`` pairs of the forward
    (``kernels(pairs)``) and of the backward (``kernels(pairs, recomputed helpers)``) into
    the framework's fused kernels of the same formulas (torch's ``silu_backward``), dropping
    the helpers no longer read; for the backward it may return :class:`Branches` (a kernel's
    statements under a condition, the derived ones otherwise).

    ``eye`` is the framework's identity matrix of ``{like}``'s dtype (and device), a template
    with ``{size}`` and ``{like}``: its rows turn integer labels into one-hot rows;
    ``zeros`` is the framework's ``zeros_like``; ``recorded_printer``, when given, prints
    the forward again as :attr:`Op.recorded`.
    """
    spec = derivation.spec
    pairs = scaffold.forward_pairs(derivation)
    pairs = kernels(pairs) if kernels is not None else pairs
    dims = scaffold.forward_dims(derivation, pairs)
    reserved = {s.name for s, _ in pairs} | {s.name for s in (*spec.inputs, *spec.constants, *spec.dims)}
    statements = scaffold.statements(pairs, printer({}), reserved)
    recorded = scaffold.statements(pairs, recorded_printer({}), reserved) if recorded_printer else None
    backward, read = _backward(derivation, printer, zeros, kernels)
    params = [p.name for p in spec.params]
    saved = [*derivation.cache_names, *(p for p in params if p in read and p not in derivation.cache_names)]
    arguments = {*spec.input_names, *params, *(c.name for c in spec.constants)}
    masks = {c.symbol.name for c in derivation.cache if c.mask}
    intermediate = any(n not in arguments | masks | {spec.output.name} for n in saved)
    return Op(list(spec.input_names), params, [c.name for c in spec.constants], saved,
              [d.name for d in derivation.dims_used], scaffold.dim_bindings(spec, dims, {}), _onehot_lines(spec, eye),
              statements, backward, spec.output.name, intermediate,
              None if recorded == statements else recorded)


def _onehot_lines(spec, eye: str) -> list[str]:
    """Integer labels given for a one-hot constant become one-hot rows (as the book's loss accepts)."""
    lines = []
    for kind, t, axis in spec.assumptions:
        shape = spec.shapes[t]
        if kind == "onehot" and axis == len(shape) - 1:
            size = shape[axis]
            rows = eye.format(size=size.name if isinstance(size, sympy.Symbol) else str(size), like=spec.inputs[0].name)
            lines += [f"if {t.name}.ndim == 1:  # integer labels: make one-hot rows",
                      f"{scaffold.INDENT}{t.name} = {rows}[{t.name}]"]
    return lines


def _backward(derivation: Derivation, printer: Printer, zeros: str,
              kernels: Callable[..., list] | None = None) -> tuple[list[str], set[str]]:
    """The backward's statements (recomputed helpers, then node by node), and the names they read."""
    spec = derivation.spec
    pairs = [(c.symbol, c.expr) for c in derivation.recompute] + list(derivation.steps)
    found = kernels(pairs, {c.symbol for c in derivation.recompute}) if kernels is not None else pairs
    branches = [found.fast, found.formula] if isinstance(found, Branches) else [found]
    handed_out = {f"d{name}" for name in (*spec.input_names, *(p.name for p in spec.params))}
    printed, read = [], set()
    for pairs in branches:
        reserved = set(scaffold.names_of(derivation)) | {s.name for s, _ in pairs} | {DOUT.name}
        lines = scaffold.statements(pairs, printer({}), reserved)
        printed.append([scaffold.fresh_gradient(line, handed_out).replace("np.zeros_like(", f"{zeros}(")
                        for line in lines])
        read |= set().union(*(e.free_symbols for _, e in pairs)) if pairs else set()
    if isinstance(found, Branches):
        lines = [f"if {found.condition}:", *indented(printed[0], 1), "else:", *indented(printed[1], 1)]
    else:
        (lines,) = printed
    return lines, {s.name for s in read}


def indented(lines: list[str], depth: int) -> list[str]:
    return [scaffold.INDENT * depth + line if line else "" for line in lines]
