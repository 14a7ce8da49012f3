"""The command line: ``symbackprop check | derive | generate``.

Exit codes: 0 all good, 1 a check failed, 2 bad input (one line on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from . import __version__, catalog
from .errors import ParseError, SpecError, SymbackpropError
from .parsing import format_expression, is_identifier, parse_expression
from .spec import Spec, layer


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit code 2 with one line, like every bad input
        raise SymbackpropError(message)


def _expr_spec(text: str) -> Spec:
    try:
        expr = parse_expression(text)
    except ParseError as exc:
        raise ParseError(f"--expr: {exc}") from None
    if not expr.free_symbols:
        raise SpecError("--expr: the expression has no input (write it in x, e.g. \"tanh(x)\")")
    return layer(expr, name="Layer", output="out" if any(s.name == "y" for s in expr.free_symbols) else "y")


def _specs(args) -> list[Spec]:
    if getattr(args, "expr", None):
        return [_expr_spec(args.expr)]
    names = args.spec if isinstance(args.spec, list) else [args.spec]
    if not names or names == [None]:
        if args.command == "check":
            return catalog.load_all()
        raise SymbackpropError("give a SPEC (a .toml file or a bundled name such as sigmoid) or --expr")
    return [catalog.load(n) for n in names]


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


# -- commands ---------------------------------------------------------------------------
def cmd_derive(args) -> int:
    (spec,) = _specs(args)
    derivation = spec.derive()
    if args.json:
        _print_json(derivation.to_json())
        return 0
    origin = f"  ({spec.source})" if spec.source else ""
    print(f"{spec.name}{origin}")
    for name, expr in spec.graph:
        print(f"  forward   {name} = {format_expression(expr)}")
    y = spec.output.name
    for k, v in derivation.local.items():
        print(f"  local     d{y}/d{k} = {derivation.readable(v, standalone=False)}")
    if spec.is_array:  # node by node reads better than one flattened formula
        for target, expr in derivation.steps:
            print(f"  backward  {target.name} = {derivation.readable(expr, standalone=False)}")
    else:
        for k, v in derivation.backward.items():
            print(f"  backward  d{k} = {derivation.readable(v, standalone=False)}")
    print(f"  cache     {', '.join(derivation.cache_names) or 'nothing'}")
    for c in derivation.recompute:
        if not c.mask:
            print(f"  where     {c.symbol.name} = {derivation.readable(c.expr)}  (recomputed in backward)")
    for note in derivation.notes:
        print(f"  note      {note}")
    return 0


def cmd_generate(args) -> int:
    (spec,) = _specs(args)
    if args.name is not None and not is_identifier(args.name):
        raise SpecError(f"--name: {args.name!r} is not a valid class name")
    source = spec.derive().generate(name=args.name)
    if args.output:
        from .files import write_atomic

        write_atomic(args.output, source, force=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return 0


def cmd_check(args) -> int:
    specs = _specs(args)
    reports = []
    if not args.json:
        print(f"{'declaration':<22} {'ok':<4} {'method':<8} {'max rel err':>11} {'tails err':>10} "
              f"{'claims':>6} {'chains':>6} {'expect':>6} {'seconds':>7}")
    for spec in specs:
        report = spec.check(max_examples=args.examples)
        reports.append(report)
        if not args.json:
            print(_row(report), flush=True)
            if report.parameters:
                figures = ", ".join(f"{name} {f['central']:.1e}" + (f" (complex step {f['complex']:.1e})" if "complex" in f
                                                                   else "") for name, f in report.parameters.items())
                print(f"    gradient check, mean |backprop - numerical| per parameter: {figures}")
            for problem in report.problems:
                print(f"    {problem}")
    ok = all(r.ok for r in reports)
    if args.json:
        _print_json({"ok": ok, "results": [r.to_json() for r in reports]})
    else:
        print(f"\n{sum(r.ok for r in reports)} of {len(reports)} declarations checked OK")
    return 0 if ok else 1


def _row(r) -> str:
    def tally(items, good):
        return f"{sum(good(i) for i in items)}/{len(items)}" if items else "-"

    tails = "-" if r.tails_max_error is None else f"{r.tails_max_error:.1e}"
    return (f"{r.name[:22]:<22} {'yes' if r.ok else 'NO':<4} {r.method:<8} {r.backward_max_rel_error:>11.1e} "
            f"{tails:>10} {tally(r.claims, lambda c: c['status'] != 'wrong'):>6} "
            f"{tally(r.chains, lambda c: c['ok']):>6} {tally(r.expect, lambda e: e['ok']):>6} {r.seconds:>7.2f}")


# -- the parser -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symbackprop", description="Declare a layer once; derive, generate and check its backward pass.")
    parser.add_argument("--version", action="version", version=f"symbackprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("check", help="derive, generate and check declarations numerically (default: all bundled)")
    p.add_argument("spec", nargs="*", help="a .toml file or a bundled name; none: every bundled declaration")
    p.add_argument("--expr", help="a one-off elementwise layer, e.g. \"1/(1 + exp(-x))\"")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--examples", type=int, default=25, help="hypothesis examples per declaration (default 25)")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("derive", help="local derivatives, the backward pass and the cache")
    p.add_argument("spec", nargs="?", help="a .toml file or a bundled name")
    p.add_argument("--expr", help="a one-off elementwise layer, e.g. \"tanh(x)\"")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_derive)

    p = sub.add_parser("generate", help="the numpy layer class, to stdout or a file")
    p.add_argument("spec", nargs="?", help="a .toml file or a bundled name")
    p.add_argument("--expr", help="a one-off elementwise layer")
    p.add_argument("-o", "--output", help="write to this file (atomically; never over an existing one)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--name", help="class name (default: from the declaration)")
    p.set_defaults(run=cmd_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "expr", None) and getattr(args, "spec", None):
            raise SymbackpropError("give either a SPEC or --expr, not both")
        return args.run(args)
    except SymbackpropError as exc:
        print(f"symbackprop: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symbackprop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout must stay open until exit
        return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())
