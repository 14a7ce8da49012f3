"""The command line: ``symbackprop check | derive | generate | latex | graph | verify-steps | verify-layer``.

Exit codes: 0 all good, 1 a check failed, 2 bad input (one line on stderr, no traceback),
130 interrupted (Ctrl-C: what finished is said on stderr, no output file is left).
``verify-layer`` and ``verify-steps`` grade many submissions at once, each in its own
process (:mod:`symbackprop.grading`), given several paths, a glob pattern, or a limit.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence

from .errors import ParseError, SpecError, SymbackpropError
from .escape import shown
from .interrupts import checkpoint, ctrl_c_latched, pressed
from .version import __version__

# Commands import what they need when they run: ``symbackprop --help`` loads no SymPy.


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit code 2 with one line, like every bad input
        raise SymbackpropError(message)


def _expr_spec(text: str):
    from .lang.parser import parse_expression
    from .spec.model import layer

    try:
        expr = parse_expression(text)
    except ParseError as exc:
        raise ParseError(f"--expr: {exc}") from None
    if not expr.free_symbols:
        raise SpecError("--expr: the expression has no input (write it in x, e.g. \"tanh(x)\")")
    return layer(expr, name="Layer")


def _specs(args) -> list:
    """The declarations a command names, their derivations taken from the cache when there."""
    from .cache import cached_derivation
    from .spec import catalog

    if getattr(args, "expr", None):
        specs = [_expr_spec(args.expr)]
    else:
        names = args.spec if isinstance(args.spec, list) else [args.spec]
        if not names or names == [None]:
            if args.command != "check":
                raise SymbackpropError("give a SPEC (a .toml file or a bundled name such as sigmoid) or --expr")
            specs = catalog.load_all()
        else:
            from .grading.batch import is_pattern

            names = [name for given in names for name in (_step_files([given]) if is_pattern(given) else [given])]
            specs = [catalog.load(n) for n in names]
    for spec in specs:
        cached_derivation(spec, _cache(args))
    return specs


def _cache(args):
    from .cache import Cache

    if getattr(args, "_cache", None) is None:
        args._cache = Cache(enabled=not getattr(args, "no_cache", False))
    return args._cache


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


# -- commands ---------------------------------------------------------------------------
def cmd_list(args) -> int:
    """One line per bundled declaration: its name, the book's section, its kind and title."""
    from .spec import catalog

    for name in catalog.bundled_names():
        spec = catalog.load(name)
        kind = "network" if spec.predict else "array" if spec.is_array else "elementwise"
        title = spec.name + (f": {spec.description}" if spec.description else "")
        print(shown(f"{name:<18} {spec.section or '-':<13} {kind:<12} {title}"))
    return 0


def cmd_show(args) -> int:
    """The TOML text of a bundled declaration, as shipped, to copy and edit."""
    from .spec import catalog

    path = catalog.resolve(args.name if args.name.startswith(catalog.BUNDLED) else catalog.BUNDLED + args.name)
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def cmd_derive(args) -> int:
    from .derivation import derive
    from .indexed import INDEX_ATOMS
    from .lang.text import format_statement

    (spec,) = _specs(args)
    derivation = derive(spec)
    higher = _higher_order(derivation, args.order)
    if args.json:
        data = derivation.to_json()
        if higher:
            data["higher_order"] = {str(args.order): {h.key: derivation.readable(h.expr) for h in higher}}
        _print_json(data)
        return 0
    origin = f"  ({shown(spec.source)})" if spec.source else ""
    print(f"{shown(spec.name)}{origin}")
    for name, expr in spec.graph:
        print(f"  forward   {format_statement(name.name, expr)}")
    y = spec.output.name
    for k, v in derivation.local.items():
        print(f"  local     d{y}/d{k} = {derivation.readable(v, standalone=False)}")
    if spec.is_array:  # node by node reads better than one flattened formula
        for target, expr in derivation.steps:
            text = (format_statement(target.name, expr) if expr.atoms(*INDEX_ATOMS)
                    else f"{target.name} = {derivation.readable(expr, standalone=False)}")
            print(f"  backward  {text}")
    else:
        for k, v in derivation.backward.items():
            print(f"  backward  d{k} = {derivation.readable(v, standalone=False)}")
    print(f"  cache     {', '.join(derivation.cache_names) or 'nothing'}")
    for symbol, expr in derivation.kept.items():
        print(f"  where     {symbol.name} = {derivation.readable(expr)}  (computed in forward)")
    for c in derivation.recompute:
        if not c.mask:
            print(f"  where     {c.symbol.name} = {derivation.readable(c.expr, standalone=False)}  (recomputed in backward)")
    for h in higher:
        below = "".join(f"d{x.name}" + (str(h.wrt.count(x)) if h.wrt.count(x) > 1 else "")
                        for x in dict.fromkeys(h.wrt))
        print(f"  order {args.order}   d{args.order}{y}/{below} = {derivation.readable(h.expr)}")
    for note in derivation.notes:
        print(f"  note      {note}")
    return 0


def _higher_order(derivation, order: int) -> list:
    if order == 1:
        return []
    from .derivation.order import higher_order

    return higher_order(derivation, order)


def cmd_latex(args) -> int:
    from .explain import latex, save_latex

    (spec,) = _specs(args)
    text = latex(spec, inline=args.inline, order=args.order)
    if args.output:
        save_latex(text, args.output, force=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_graph(args) -> int:
    from .explain import GraphvizMissing, graph

    (spec,) = _specs(args)
    collapse = {"backward": True, "product": "product"}.get(args.collapse, False)
    drawing = graph(spec, symbolic=args.symbolic, collapse=collapse)
    if not args.output:
        sys.stdout.write(drawing.dot)
        return 0
    try:
        drawing.save(args.output, force=args.force)
    except GraphvizMissing as exc:
        sys.stdout.write(drawing.dot)
        raise GraphvizMissing(f"{exc}; the DOT text is on stdout") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_generate(args) -> int:
    from .lang.parser import is_identifier
    from .pipeline import generate

    (spec,) = _specs(args)
    if args.name is not None and not is_identifier(args.name):
        raise SpecError(f"--name: {args.name!r} is not a valid class name")
    source = generate(spec, backend=args.backend, name=args.name)
    if args.output:
        from .files import write_atomic

        write_atomic(args.output, source, force=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return 0


def _generated_by(spec, backend: str) -> bool:
    """Does ``backend`` generate ``spec``? If not, say so on stderr (a bundled declaration it
    refuses, such as a network for torch, is left out of a whole-catalog check)."""
    from .codegen import GenerationError
    from .pipeline import generate

    try:
        generate(spec, backend=backend)
    except GenerationError as exc:
        print(f"{shown(spec.name)}: not checked: {shown(str(exc))}", file=sys.stderr)
        return False
    return True


def cmd_check(args) -> int:
    from .cache import cached_check

    specs = _specs(args)
    if args.backend != "numpy" and not args.spec and not args.expr:  # every bundled one the backend generates
        specs = [s for s in specs if _generated_by(s, args.backend)]
    if args.markdown:
        from .report import planned_paths, refuse_existing

        refuse_existing(planned_paths(args.markdown, specs), args.force)
    reports = []
    if not args.json:
        print(f"{'declaration':<22} {'ok':<4} {'method':<8} {'max rel err':>11} {'tails err':>10} "
              f"{'claims':>6} {'chains':>6} {'expect':>6} {'seconds':>7}")
    try:
        for spec in specs:
            checkpoint()
            options = {"backend": args.backend} if args.backend != "numpy" else {}  # numpy: the cache keys of before
            report = cached_check(spec, _cache(args), max_examples=args.examples, **options)
            reports.append(report)
            if not args.json:
                print(_row(report), flush=True)
                if report.parameters:
                    figures = ", ".join(f"{name} {f['central']:.1e}" + (f" (complex step {f['complex']:.1e})"
                                        if "complex" in f else "") for name, f in report.parameters.items())
                    print(f"    gradient check, mean |backprop - numerical| per parameter: {figures}")
                for problem in report.problems:
                    print(f"    {problem}")
                for f in report.findings:
                    print(f"    {f['kind']}{' ' + f['input'] if f['input'] else ''}: {f['message']}")
        checkpoint()
    except BaseException as exc:
        if not (isinstance(exc, KeyboardInterrupt) or pressed()):
            raise
        _interrupted(reports, len(specs))
        return 130
    ok = all(r.ok for r in reports)
    if args.markdown:
        _write_markdown_whole(args, specs, reports)
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.json:
        _print_json({"ok": ok, "results": [r.to_json() for r in reports]})
    else:
        print(f"\n{sum(r.ok for r in reports)} of {len(reports)} declarations checked OK")
    return 0 if ok else 1


def _interrupted(reports: list, total: int) -> None:
    """Ctrl-C during check: what finished, on stderr; no report, no JSON, no file."""
    done = ", ".join(f"{r.name} {'ok' if r.ok else 'FAILED'}" for r in reports) or "nothing"
    print(f"symbackprop: interrupted after {len(reports)} of {total} declarations ({done}); nothing written",
          file=sys.stderr)


def _write_markdown_whole(args, specs: list, reports: list) -> None:
    """The report and its pictures, or (interrupted, failed) none of the files it created."""
    from pathlib import Path

    from .report import pictures_folder, planned_paths, write_markdown

    paths = [Path(p) for p in planned_paths(args.markdown, specs)]
    folder = pictures_folder(args.markdown)
    existed = {p for p in [*paths, folder] if p.exists()}
    try:
        write_markdown(args.markdown, specs, reports, force=args.force)
    except BaseException:
        for p in paths:
            if p not in existed:
                p.unlink(missing_ok=True)
        if folder not in existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _row(r) -> str:
    def tally(items, good):
        return f"{sum(good(i) for i in items)}/{len(items)}" if items else "-"

    tails = "-" if r.tails_max_error is None else f"{r.tails_max_error:.1e}"
    return (f"{shown(r.name)[:22]:<22} {'yes' if r.ok else 'NO':<4} {r.method:<8} {r.backward_max_rel_error:>11.1e} "
            f"{tails:>10} {tally(r.claims, lambda c: c['status'] != 'wrong'):>6} "
            f"{tally(r.chains, lambda c: c['ok']):>6} {tally(r.expect, lambda e: e['ok']):>6} {r.seconds:>7.2f}")


def cmd_verify_steps(args) -> int:
    from .verify import verify

    if _batch_mode(args, args.spec):
        from .grading.worker import STEPS, Task

        tasks = [Task(STEPS, path, **_limits(args)) for path in _step_files(args.spec)]
        return _grade_batch(args, tasks, {"command": "verify-steps"})
    report = verify(args.spec[0])
    _emit(args, _json_text(report.to_json()) if args.format == "json" else report.text())
    return 0 if report.ok else 1


def cmd_verify_layer(args) -> int:
    from .checker import load_class, verify_layer
    from .spec import catalog

    if (args.against is None) == (args.expr is None):
        raise SymbackpropError("give the declaration to check against: --against SPEC (or --expr)")
    spec = _expr_spec(args.expr) if args.expr else catalog.load(args.against)
    if _batch_mode(args, [t.rpartition(":")[0] for t in args.target]):
        from .grading.batch import expand
        from .grading.worker import LAYER, Task

        tasks = [Task(LAYER, path, name, spec, **_limits(args)) for path, name in expand(args.target, with_class=True)]
        return _grade_batch(args, tasks, {"command": "verify-layer", "against": spec.source or spec.name})
    with contextlib.redirect_stdout(sys.stderr):  # the layer's own prints must not mix with the report
        cls = load_class(args.target[0], spec)
        report = verify_layer(cls, spec, name=args.target[0])
    _emit(args, _json_text(report.to_json()) if args.format == "json" else report.text())
    return 0 if report.ok else 1


# -- many submissions at once (symbackprop.grading) ---------------------------------------
def _batch_mode(args, paths: list[str]) -> bool:
    """Several paths, a glob pattern, or a limit asked for: each submission in its own process."""
    from .grading.batch import is_pattern

    return len(paths) > 1 or any(is_pattern(p) for p in paths) or args.format == "gradescope" or \
        args.executor == "dask" or args.resume or \
        any(getattr(args, k, None) is not None for k in ("jobs", "timeout", "memory", "shard", "isolation"))


def _step_files(specs: list[str]) -> list[str]:
    """Derivation files by path or glob pattern, sorted; a bundled name stands for its file."""
    from .grading.batch import expand, is_pattern
    from .spec import catalog

    files = [p if is_pattern(p) or os.path.exists(p) else str(catalog.resolve(p)) for p in specs]
    return [path for path, _ in expand(files, with_class=False)]


def _limits(args) -> dict:
    from .grading.batch import DEFAULT_MEMORY, DEFAULT_TIMEOUT

    return {"timeout": args.timeout or DEFAULT_TIMEOUT, "memory": args.memory or DEFAULT_MEMORY}


def _grade_batch(args, tasks: list, about: dict) -> int:
    """Grade, then the records to stdout (or ``-o``, atomically) and the summary to stderr;
    on Ctrl-C only what finished, on stderr, and no output at all (exit code 130)."""
    from .grading.batch import grade
    from .grading.view import Progress, interrupted_text, summary_table, to_json, to_text

    if args.resume and not args.output:
        raise SymbackpropError("--resume needs -o FILE (FILE.records.jsonl holds what finished)")
    for path in (args.output, None if args.resume else _records_path(args)):
        if path and os.path.lexists(path) and not args.force:
            raise SymbackpropError(f"{path}: exists; pass --force to overwrite")
    if args.shard:
        from .grading.shards import about_shard, select

        if args.format != "json":
            raise SymbackpropError("--shard needs --json (merge joins the JSON of the shards)")
        about = {**about, **about_shard(*args.shard, len(tasks))}
        tasks = select(tasks, *args.shard)
    if args.format == "gradescope":
        from .grading.gradescope import only_result, parse_visibility, results_json

        visibility = parse_visibility(args.visibility)
        only_result(tasks)
    if getattr(args, "isolation", None) == "bwrap":
        from .grading.sandbox import probe

        level, why = probe()
        if why:
            raise SymbackpropError(f"--isolation bwrap: {why}")
    from .grading.resume import finished, joined, remaining

    done = finished(_records_path(args), tasks) if args.resume else {}
    indices, tasks = remaining(tasks, done, getattr(args, "isolation", None))
    if done:
        print(f"symbackprop: {len(done)} record{'s' * (len(done) != 1)} kept from {_records_path(args)}; "
              f"grading the other {len(tasks)}", file=sys.stderr)
    isolation = tasks[0].isolation if done and tasks else getattr(args, "isolation", None)  # probed once
    progress = Progress(len(tasks), sys.stderr)
    records = _Records(args, indices)
    try:
        if args.executor == "dask":
            from .grading.batch import isolated
            from .grading.cluster import grade_on_cluster

            if not args.scheduler:
                raise SymbackpropError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
            batch = grade_on_cluster(isolated(tasks, isolation), args.scheduler,
                                     on_progress=progress.update, on_result=records)
        else:
            batch = grade(tasks, jobs=args.jobs, on_progress=progress.update, on_result=records,
                          isolation=isolation)
    finally:
        progress.close()
        records.close()
    batch = joined(batch, done, records.graded)
    if batch.interrupted:
        kept = f"\nwhat finished is kept in {records.path}" if records.path else ""
        print(interrupted_text(batch) + "\n" + summary_table(batch) + kept, file=sys.stderr)
        return 130
    if args.format == "gradescope":
        report = _json_text(results_json(only_result(batch.results), about["command"], visibility))
    elif args.format == "json":
        report = _json_text(to_json(batch, **about))
    else:
        report = to_text(batch).rstrip("\n")
    _emit(args, report)
    records.remove()
    print(summary_table(batch), file=sys.stderr)
    return 0 if batch.ok else 1


def _json_text(data: dict) -> str:
    return json.dumps(data, indent=2, default=str)


def cmd_merge(args) -> int:
    from .grading.shards import merge

    if args.output and os.path.exists(args.output) and not args.force:
        raise SymbackpropError(f"{args.output}: exists; pass --force to overwrite")
    documents = []
    for name in args.shards:
        try:
            with open(name, encoding="utf-8") as f:
                documents.append(json.load(f))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise SymbackpropError(f"{name}: not a JSON file ({type(exc).__name__})") from None
    joined = merge(documents, args.shards)
    _emit(args, _json_text(joined))
    return 0 if joined["ok"] else 1


def _records_path(args) -> str | None:
    """``-o FILE``: ``FILE.records.jsonl`` gets each record as its submission finishes."""
    return f"{args.output}.records.jsonl" if getattr(args, "output", None) else None


class _Records:
    """The append-only records file (JSON lines ``{"index": i, ...record}``): what finished
    survives a crash or an interrupt of the command; removed once the output is written."""

    def __init__(self, args, indices: Sequence[int]):
        self.path = _records_path(args)
        self.indices = list(indices)  # of the tasks graded now, in the whole batch
        self.graded: dict = {}
        self.fd = None
        if self.path:
            keep = os.O_TRUNC if args.force and not args.resume else 0 if args.resume else os.O_EXCL
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | keep
            try:
                self.fd = os.open(self.path, flags, 0o644)
            except OSError as exc:
                raise SymbackpropError(f"{self.path}: cannot write: {exc.strerror}") from None

    def __call__(self, index: int, result) -> None:
        index = self.indices[index]
        self.graded[index] = result
        if self.fd is not None:
            os.write(self.fd, (json.dumps({"index": index, **result.to_json()}, default=str) + "\n").encode())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self) -> None:
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _emit(args, text: str) -> None:
    """The report, to stdout or atomically to ``-o FILE``."""
    if getattr(args, "output", None):
        from .files import write_atomic

        write_atomic(args.output, text + "\n", force=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)


# -- the parser -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symbackprop", description="Declare a layer once; derive, generate and check its backward pass.")
    parser.add_argument("--version", action="version", version=f"symbackprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("check", help="derive, generate and check declarations numerically (default: all bundled)")
    p.add_argument("--backend", choices=("numpy", "fused", "torch", "jax", "torch-op", "array-api"), default="numpy",
                   help="the generated code to check (fused: numba kernels, pip install '.[fast]'; "
                   "torch: the autograd.Function, pip install '.[torch]'; jax: the custom_vjp, '.[jax]'; "
                   "torch-op: the torch.library.custom_op, '.[torch]'; array-api: the class on array-API "
                   "arrays, '.[array-api]')")
    p.add_argument("spec", nargs="*", help="a .toml file or a bundled name; none: every bundled declaration")
    p.add_argument("--expr", help="a one-off elementwise layer, e.g. \"1/(1 + exp(-x))\"")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--examples", type=_positive(int), default=25, help="hypothesis examples per declaration (default 25)")
    p.add_argument("--markdown", metavar="FILE", help="also write a Markdown report, its graphs in FILE's stem + _files/")
    p.add_argument("--force", action="store_true", help="overwrite an existing report and its pictures")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("list", help="the bundled declarations, one line each")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("show", help="print a bundled declaration's TOML, to copy and edit")
    p.add_argument("name", help="a bundled name, e.g. sigmoid")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("derive", help="local derivatives, the backward pass and the cache")
    _one_spec(p, "a one-off elementwise layer, e.g. \"tanh(x)\"")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--order", type=_order, default=1, help="also derivatives of this order (2 to 4), in cached values")
    p.set_defaults(run=cmd_derive)

    p = sub.add_parser("latex", help="the chain-rule steps as a LaTeX align* block")
    _one_spec(p)
    p.add_argument("--inline", action="store_true", help="$$\\begin{aligned}...$$ blocks for a notebook or Markdown cell")
    p.add_argument("--order", type=_order, default=1, help="also derivatives of this order (2 to 4)")
    _output_file(p, "write .tex, or typeset .pdf / .png (needs a TeX engine)")
    p.set_defaults(run=cmd_latex)

    p = sub.add_parser("graph", help="the computational graph with forward values and backward gradients (DOT)")
    _one_spec(p)
    _output_file(p, "write .dot, or draw .svg / .png / .pdf with Graphviz")
    p.add_argument("--symbolic", action="store_true", help="label arrows with expressions, not worked numbers")
    p.add_argument("--collapse", nargs="?", const="backward", choices=("backward", "product"),
                   help="draw the layer as one node (backward arrow: the chosen form, or the raw product)")
    p.set_defaults(run=cmd_graph)

    p = sub.add_parser("generate", help="the numpy layer class, to stdout or a file")
    _one_spec(p)
    _output_file(p, "write to this file (atomically; never over an existing one)")
    p.add_argument("--name", help="class name (default: from the declaration)")
    p.add_argument("--backend", choices=("numpy", "fused", "torch", "jax", "torch-op", "array-api"), default="numpy",
                   help="numpy: readable numpy (default); fused: multi-threaded numba kernels (pip install '.[fast]'); "
                   "torch: a torch.autograd.Function and nn.Module (pip install '.[torch]'); "
                   "jax: a jax.custom_vjp function (pip install '.[jax]'); "
                   "torch-op: a torch.library.custom_op with register_autograd and an nn.Module ('.[torch]'); "
                   "array-api: the layer class on any array-API array, through array-api-compat ('.[array-api]')")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("verify-steps", help="check the hand claims and derivation chains, step by step")
    p.add_argument("spec", nargs="+", help="a bundled name, a layer .toml, or a standalone derivation .toml; "
                   "several, or a glob pattern: grade each in its own process")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _batch_options(p)
    p.set_defaults(run=cmd_verify_steps)

    p = sub.add_parser("verify-layer", help="check a hand-written layer class against a declaration")
    p.add_argument("target", nargs="+", metavar="FILE.py:CLASS",
                   help="the class to check (the file is imported), or FILE.py:FORWARD,BACKWARD for two "
                        "functions forward(...) -> (out, cache) and backward(dout, cache) -> gradients; several, "
                        "or a glob pattern in FILE ('submissions/*/layers.py:Sigmoid'): grade each in its own process")
    p.add_argument("--against", metavar="SPEC", help="a .toml file or a bundled name")
    p.add_argument("--expr", help="or a one-off elementwise layer, e.g. \"tanh(x)\"")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _batch_options(p)
    p.set_defaults(run=cmd_verify_layer)
    p = sub.add_parser("merge", help="join the --json files of grading shards (--shard K/N) into one run's JSON")
    p.add_argument("shards", nargs="+", metavar="SHARD.json", help="the files of shards 1/N to N/N, any order")
    p.add_argument("-o", "--output", metavar="FILE", help="write the joined JSON here (atomically) instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(run=cmd_merge)
    for command in sub.choices.values():
        command.add_argument("--time-limit", type=_positive(float), metavar="SECONDS",
                             help="stop the command after this long, with a one-line error (default "
                                  f"{DEFAULT_TIME_LIMIT:g} s; check: {TIME_LIMITS['check']:g} s; verify-*: per "
                                  "submission, --timeout)")
    for command in ("check", "derive", "generate", "latex", "graph", "verify-steps"):
        sub.choices[command].add_argument(
            "--no-cache", action="store_true",
            help="derive and check afresh, without the on-disk cache ($SYMBACKPROP_CACHE, ~/.cache/symbackprop)")
    return parser


def _one_spec(p: argparse.ArgumentParser, expr_help: str = "a one-off elementwise layer") -> None:
    """The declaration of a command that takes one: a SPEC, or ``--expr``."""
    p.add_argument("spec", nargs="?", help="a .toml file or a bundled name")
    p.add_argument("--expr", help=expr_help)


def _output_file(p: argparse.ArgumentParser, output_help: str) -> None:
    """``-o``, and ``--force`` to write over an existing file."""
    p.add_argument("-o", "--output", help=output_help)
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def _batch_options(p: argparse.ArgumentParser) -> None:
    """Options of verify-layer and verify-steps; any of --jobs, --timeout, --memory grades in isolation."""
    p.add_argument("--jobs", type=_positive(int), metavar="N", help="submissions graded at once (default: the cores)")
    p.add_argument("--timeout", type=_positive(float), metavar="SECONDS",
                   help="wall-clock limit per submission (default 10)")
    p.add_argument("--memory", type=_memory, metavar="SIZE", help="memory limit per submission (default 1G)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout; "
                   "FILE.records.jsonl keeps each record as it finishes until then")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--resume", action="store_true",
                   help="with -o FILE: keep the records FILE.records.jsonl holds from a run cut short, grade the rest")
    p.add_argument("--isolation", choices=("bwrap", "none"), default=None,
                   help="run each submission in a bubblewrap sandbox (default where it starts) or without one")
    p.add_argument("--format", choices=("text", "json", "gradescope"),
                   help="text (default), json (as --json), or gradescope: its results.json for one submission")
    p.add_argument("--visibility", action="append", default=[], metavar="[KIND=]VISIBILITY",
                   help="gradescope: when students see a test (hidden, after_due_date, after_published, "
                        "visible; default visible), for every test or one kind; repeatable")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: processes on this machine (default); dask: tasks on a Dask cluster")
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --executor dask: the scheduler (tcp://host:8786)")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="grade only the K-th of N slices of the sorted submissions (JSON; join with merge)")


def _shard(text: str) -> tuple[int, int]:
    from .grading.shards import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return convert


def _memory(text: str) -> int:
    from .grading.batch import parse_memory

    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _order(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 4:
        raise argparse.ArgumentTypeError(f"expected 1 to 4, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (130 after Ctrl-C, however it surfaced)."""
    with ctrl_c_latched():
        try:
            code = _main(argv)
        except BaseException:
            if not pressed():
                raise
            code = _say_interrupted()
        return _say_interrupted() if pressed() and code != 130 else code


def _refuse_idle_options(args) -> None:
    """An option that would be silently ignored is an error instead."""
    if getattr(args, "visibility", None) and args.format != "gradescope":
        raise SymbackpropError("--visibility applies to --format gradescope only")
    if getattr(args, "scheduler", None) and args.executor != "dask":
        raise SymbackpropError("--scheduler applies to --executor dask only")


def run() -> None:
    """The console script and ``python -m symbackprop``: :func:`main`, then exit with its code.

    After Ctrl-C (130) the process ends at once: nothing remains to write (files are written
    atomically or not at all), and a late ``KeyboardInterrupt`` during interpreter shutdown
    could otherwise turn the status into death by SIGINT (seen once in 21 runs under load).
    """
    code = main()
    if code == 130:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(130)
    raise SystemExit(code)


def _say_interrupted() -> int:
    print("symbackprop: interrupted", file=sys.stderr)
    return 130


def _main(argv: Sequence[str] | None) -> int:
    _hypothesis_storage()
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "expr", None) and getattr(args, "spec", None):
            raise SymbackpropError("give either a SPEC or --expr, not both")
        if hasattr(args, "format"):
            if args.json and args.format not in (None, "json"):
                raise SymbackpropError(f"give either --json or --format {args.format}, not both")
            args.format = "json" if args.json else args.format or "text"
        _refuse_idle_options(args)
        return _run_bounded(args)
    except SymbackpropError as exc:
        print(f"symbackprop: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except (MemoryError, RecursionError) as exc:
        print(f"symbackprop: error: {type(exc).__name__}: the work grew past this machine's limits "
              "(a smaller declaration, or fewer --examples)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _say_interrupted()
    except BrokenPipeError:  # output piped into head: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout must stay open until exit
        return 0


#: Wall-clock bound of a command, in seconds (``--time-limit``): ``check`` checks many declarations.
TIME_LIMITS = {"check": 600.0}
DEFAULT_TIME_LIMIT = 60.0
#: Commands bounded per submission (``--timeout``), not as a whole, unless ``--time-limit`` is given.
UNBOUNDED = ("verify-layer", "verify-steps", "merge")


def _run_bounded(args) -> int:
    """The command, within ``--time-limit`` seconds (a batch is bounded per submission instead)."""
    from .errors import DerivationTimeout
    from .timebound import bounded

    if getattr(args, "time_limit", None) is None and args.command in UNBOUNDED:
        return args.run(args)
    seconds = args.time_limit or TIME_LIMITS.get(args.command, DEFAULT_TIME_LIMIT)
    try:
        return bounded(lambda: args.run(args), seconds)
    except DerivationTimeout:
        raise SymbackpropError(f"{args.command} did not finish within {seconds:g} s "
                               "(--time-limit SECONDS allows more)") from None


def _hypothesis_storage() -> None:
    """Keep hypothesis' files out of the working directory.

    Even without an example database, hypothesis caches the constants it finds in
    source files under ``./.hypothesis``; the command line points it at its own cache
    folder instead.  Hypothesis reads ``$HYPOTHESIS_STORAGE_DIRECTORY`` when it first
    stores something, so this is set only while hypothesis is not imported yet (a
    program or a test session that imported it keeps its own choice), and never over
    a value the user set.
    """
    if "hypothesis" not in sys.modules:
        from .files import cache_dir

        os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(cache_dir() / "hypothesis"))


def _one_line(text: str) -> str:
    return shown(" ".join(text.split()))
