"""Grading 1000 untrusted submissions with ``--jobs 4``: every verdict right, never a hang.

Builds, in a temporary folder, ``--scale`` (default 4: 1,004 submissions) copies of 160 layer files (``Sigmoid`` classes: correct ones, wrong
ones of every finding kind, endless loops, memory bombs, crashers (``os._exit``,
``SIGKILL`` of their own process, a segfault through ctypes, a C stack overflow),
``sys.exit``, megabyte printers, a submission that kills its parent process, broken
imports), 17 cheats of every kind (tests/grading/test_cheats.py: fake verdicts on every file
descriptor, patched checkers, builtins and numpy, lying arrays, reading the neighbours and the
reference, the network, writing outside, killing and stopping the grader, fork and memory
bombs; each wrong in its math, 3 copies) and of 40 derivation files (correct, slipped, slow to
prove, and hostile strings), then grades them as a teacher would::

    symbackprop verify-layer 'layers/*/layers.py:Sigmoid' --against sigmoid --jobs 4 --timeout 2 --json
    symbackprop verify-steps 'steps/*/derivation.toml' --jobs 4 --timeout 2 --json

and compares every record with the verdict its submission was built to get.  Then it
measures one submission's overhead, one job at a time: the grader's process (fork and
teardown), the submission's process and the check, the sandbox.

With ``--dask``, also grades 40 correct submissions on a Dask ``LocalCluster`` of 1 and of 2
workers (``--executor dask``) and prints submissions per second for each.

Run: ``python benchmarks/grading.py [--keep] [--scale K] [--jobs N] [--timeout S] [--dask]`` (defaults:
scale 4, 4 jobs, 2 s: a submission waits for its process and its pipes about half its time, so
twice as many jobs as cores keep both cores busy).  Prints the command's summary
tables, submissions per second, the total time and each submission's average cost; exits 1
(after a table of the mismatches) if any verdict is wrong, a cheat reached the network, or
it took longer than the budget (3 minutes per 1,000 submissions).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout
from tests.fixtures.submissions import cheats  # noqa: E402  shared with tests/grading/test_cheats.py
from tests.fixtures.submissions import sigmoid as layer  # noqa: E402  shared with tests/test_grading.py

import symbackprop  # noqa: E402
from symbackprop.spec import catalog  # noqa: E402

#: Seconds per 1,000 submissions.
BUDGET = 180.0
#: Any failing verdict will do: a cheat must not be graded ok, whatever it broke on.
NOT_OK = ["not ok"]
#: A correct layer is checked in about 0.1 s; endless loops and slow proofs burn the whole limit.
TIMEOUT = 2

SPINNER = "if os.fork() == 0:\n    while True: pass\n"
#: kind of submission: (copies, source, expected failing kinds)
LAYERS = {
    "correct": (30, layer(), []),
    "correct_stable": (8, layer(forward="e = np.exp(-np.abs(x))",
                                out="np.where(x >= 0, 1 / (1 + e), e / (1 + e))"), []),
    "correct_tanh_form": (6, layer(out="0.5 * (1 + np.tanh(x / 2))"), []),
    "correct_prints_megabytes": (3, layer(forward='print("#" * 1_000_000)', after='print("!" * 5_000_000)\n'), []),
    "correct_forks_a_spinner": (1, layer(before="import os\n", after=SPINNER), []),
    "correct_kills_its_parent": (2, layer(before="import os, signal\n",
                                          after="os.kill(os.getppid(), signal.SIGKILL)\n"), []),
    "slip_squared": (5, layer(grad="dout * self.out**2 * (1 - self.out)"), ["wrong-math"]),
    "ignores_dout": (5, layer(grad="(1.0 - self.out) * self.out"), ["wrong-math"]),
    "wrong_forward": (5, layer(out="1 / (1 + np.exp(x))", grad="-dout * (1.0 - self.out) * self.out"),
                      ["wrong-math"]),
    "float32": (5, layer(forward="x = x.astype(np.float32)", grad="(dout * (1 - self.out) * self.out)"
                         ".astype(np.float32)"), ["precision"]),
    "overflows": (5, layer(forward="e = np.exp(x)", out="e / (1 + e)"), ["precision"]),
    "flattens": (5, layer(grad="(dout * (1.0 - self.out) * self.out).ravel()"), ["shape"]),
    "two_gradients": (5, layer(grad="(dout * (1.0 - self.out) * self.out, dout)"), ["shape"]),
    "writes_dout": (5, layer(backward="dout *= (1.0 - self.out) * self.out", grad="dout"), ["side-effect"]),
    "changes_state": (5, layer(backward="self.out = self.out * 0.5", grad="dout * (1 - 2 * self.out) * 2 "
                               "* self.out"), ["side-effect"]),
    "caches_once": (5, layer(forward="first = self.out is None", out="1 / (1 + np.exp(-x)) if first else self.out"),
                    ["stale-cache"]),
    "class_cache": (5, layer(before="", forward="pass", out="type(self).shared = 1 / (1 + np.exp(-x))",
                             grad="dout * (1.0 - type(self).shared) * type(self).shared"), ["stale-cache"]),
    "raises": (5, layer(backward="raise ValueError('not done yet')"), ["exception"]),
    "needs_an_argument": (5, layer().replace("def __init__(self):", "def __init__(self, size):"), ["exception"]),
    "endless_loop": (3, layer(forward="while True: pass"), ["timeout"]),
    "loops_on_import": (3, layer(after="while True: pass\n"), ["timeout"]),
    "sleeps_on_import": (2, layer(before="import time\n", after="time.sleep(3600)\n"), ["timeout"]),
    "memory_bomb": (3, layer(forward="hog = [bytearray(10**7) for _ in range(10**6)]"), ["memory"]),
    "numpy_bomb": (3, layer(backward="np.ones(1 << 40)"), ["memory"]),
    "bomb_on_import": (3, layer(after="hog = bytearray(1 << 42)\n"), ["memory"]),
    "os_exit": (3, layer(before="import os\n", after="os._exit(3)\n"), ["crash"]),
    "kills_itself": (3, layer(before="import os, signal\n", forward="os.kill(os.getpid(), signal.SIGKILL)"),
                     ["crash"]),
    "segfault": (3, layer(before="import ctypes\n", backward="ctypes.string_at(0)"), ["crash"]),
    "stack_overflow": (3, layer(before="import sys\nsys.setrecursionlimit(10**9)\n",
                                forward="t = (); [t := (t,) for _ in range(10**6)]; hash(t)"), ["crash"]),
    "exit_on_import": (3, layer(before="import sys\n", after="sys.exit('bye')\n"), ["exception"]),
    "exit_in_backward": (3, layer(before="import sys\n", backward="sys.exit(0)"), ["exception"]),
    "import_error": (4, "import numpy_but_misspelled as np\n" + layer(), ["exception"]),
    "syntax_error": (4, layer().replace("def backward(self, dout):", "def backward(self, dout)"), ["exception"]),
    "no_such_class": (2, layer().replace("class Sigmoid:", "class Sigmoidd:"), ["invalid"]),
}


def derivation(*steps: str) -> str:
    return f'name = "d"\n[symbols]\nx = "real"\n[[chains]]\nof = "dy/dx"\nsteps = {json.dumps(list(steps))}\n'


def declaration(claim: str) -> str:
    return f'name = "Sigmoid"\ninputs = ["x"]\nforward = "1/(1 + exp(-x))"\n[claims]\nlocal.x = "{claim}"\n'


SLOW = [f"exp(tanh(x))*(sin(x + {k})**2 + cos(x + {k})**2)**{k + 5}*(cosh(x)**2 - sinh(x)**2)**{k + 3}"
        for k in range(80)]
#: kind of derivation file: (copies, text, expected failing kinds)
STEPS = {
    "correct_chain": (8, derivation("diff(1/(1 + exp(-x)), x)", "exp(-x)/(1 + exp(-x))**2",
                                    "(1/(1 + exp(-x)))*(1 - 1/(1 + exp(-x)))"), []),
    "correct_claim": (4, declaration("y * (1 - y)"), []),
    "slipped_step": (8, derivation("diff(1/(1 + exp(-x)), x)", "exp(-x)/(1 + exp(-x))"), ["wrong-step"]),
    "slipped_claim": (4, declaration("y * (1 + y)"), ["wrong-claim"]),
    "code_injection": (3, derivation("__import__('os').system('touch PWNED')", "x"), ["invalid"]),
    "power_tower": (2, derivation("9**9**9**9", "x"), ["invalid"]),
    "deep_nesting": (2, derivation("(" * 1000 + "x" + ")" * 1000, "x"), ["invalid"]),
    "huge_string": (2, derivation("+".join(["x"] * 50_000), "x"), ["invalid"]),
    "not_toml": (2, "name = \n[[chains]\n", ["invalid"]),
    "dunder": (1, derivation("x.__class__", "x"), ["invalid"]),
    "slow_to_prove": (4, derivation(*SLOW), ["timeout"]),
}


def build(folder: Path, kinds: dict, filename: str, scale: int = 1) -> dict[str, list[str]]:
    """Write every copy of every kind (``scale`` times); return the expected kinds by submission path."""
    expected, n = {}, 0
    for kind, (copies, text, verdict) in kinds.items():
        for copy in range(copies * scale):
            path = folder / f"{n:03d}_{kind}_{copy}" / filename
            path.parent.mkdir(parents=True)
            path.write_text(text)
            expected[str(path)] = verdict
            n += 1
    return expected


def grade(command: list[str], out: Path, jobs: int = 2, quiet: bool = False) -> tuple[dict, float]:
    """Run the command (its summary table goes to our stderr unless ``quiet``); its records by
    path, and seconds."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "symbackprop", *command, "--jobs", str(jobs), "--timeout", str(TIMEOUT),
                          "--json", "-o", str(out)], cwd=ROOT, timeout=600, check=False,
                         stderr=subprocess.DEVNULL if quiet else None)
    seconds = time.perf_counter() - start
    if run.returncode not in (0, 1) or not out.exists():
        raise SystemExit(f"the command failed (exit code {run.returncode}, no {out.name})")
    return {r["path"]: r for r in json.loads(out.read_text())["results"]}, seconds


def mismatches(expected: dict[str, list[str]], records: dict) -> list[tuple[str, str, str]]:
    rows = []
    for path, kinds in expected.items():
        record = records.get(path)
        got = None if record is None else list(dict.fromkeys(f["kind"] for f in record["findings"]
                                                            if f["kind"] != "kink-only"))
        if kinds == NOT_OK and record is not None and not record["ok"]:
            continue
        if got != kinds:
            detail = "missing" if record is None else "; ".join(f["message"][:80] for f in record["findings"])
            rows.append((Path(path).parent.name, ", ".join(kinds) or "ok", f"{', '.join(got or []) or 'ok'}  {detail}"))
    return rows


def dask_rates(folder: Path) -> None:
    """Submissions per second of 40 correct submissions on a LocalCluster of 1 and 2 workers."""
    import dask
    from distributed import LocalCluster

    build(folder / "dask", {"correct": (40, layer(), [])}, "layers.py")
    for workers in (1, 2):
        with dask.config.set({"distributed.worker.daemon": False}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
            _, seconds = grade(["verify-layer", f"{folder}/dask/*/layers.py:Sigmoid", "--against", "sigmoid",
                                "--executor", "dask", "--scheduler", cluster.scheduler_address],
                               folder / f"dask{workers}.json")
        print(f"dask, {workers} worker{'s' if workers > 1 else ''}: 40 submissions in {seconds:.1f} s, "
              f"{40 / seconds:.2f} per second")


def overheads(folder: Path, count: int = 20) -> None:
    """One submission's cost, one job at a time, as differences of wall-clock time per
    submission: ``count + 1`` submissions against one, so that the command's own start-up
    cancels.  A file that is not Python stops in the grader's process (its fork and
    teardown alone); a correct layer without a sandbox adds the submission's process (Python,
    numpy) and the check; the same in the sandbox adds bwrap."""
    cases = {"not Python": ("layers.txt", "x\n", []), "correct, no sandbox": ("layers.py", layer(), ["--isolation", "none"]),
             "correct, sandboxed": ("layers.py", layer(), ["--isolation", "bwrap"])}
    costs = {}
    for label, (filename, text, options) in cases.items():
        seconds = []
        for n in (1, count + 1):
            where = folder / "overhead" / f"{label.replace(' ', '_').replace(',', '')}_{n}"
            build(where, {"s": (n, text, [])}, filename)
            _, took = grade(["verify-layer", f"{where}/*/{filename}:Sigmoid", "--against", "sigmoid", *options],
                            where / "records.json", jobs=1, quiet=True)
            seconds.append(took)
        costs[label] = (seconds[1] - seconds[0]) / count
    fork, local, sandboxed = costs.values()
    print(f"one submission, one job: {sandboxed:.3f} s = {fork:.3f} s the grader's process (fork, teardown) "
          f"+ {local - fork:.3f} s the submission's process (Python, numpy) and the check "
          f"+ {sandboxed - local:.3f} s the sandbox (bwrap)")


def main(keep: bool = False, scale: int = 4, with_dask: bool = False, jobs: int = 4) -> int:
    folder = Path(tempfile.mkdtemp(prefix="symbackprop-grading-"))
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    package = Path(symbackprop.__file__).resolve().parent
    hostile = {name: (3, source, NOT_OK)
               for name, source in cheats(folder / "layers", server.getsockname()[1], package,
                                          catalog.resolve("sigmoid")).items()}
    layers = build(folder / "layers", {**LAYERS, **hostile}, "layers.py", scale)
    steps = build(folder / "steps", STEPS, "derivation.toml", scale)
    print(f"{len(layers)} layer files and {len(steps)} derivation files in {folder}", flush=True)
    got_layers, t_layers = grade(["verify-layer", f"{folder}/layers/*/layers.py:Sigmoid", "--against", "sigmoid"],
                                 folder / "layers.json", jobs)
    got_steps, t_steps = grade(["verify-steps", f"{folder}/steps/*/derivation.toml"], folder / "steps.json", jobs)
    rows = mismatches(layers, got_layers) + mismatches(steps, got_steps)
    injected = list(folder.rglob("PWNED")) + list(ROOT.rglob("PWNED")) + list(package.rglob("PWNED"))
    try:
        server.accept()
        reached = True
    except BlockingIOError:
        reached = False
    total, n = t_layers + t_steps, len(layers) + len(steps)
    print(f"\nlayers: {len(layers)} in {t_layers:.1f} s; derivations: {len(steps)} in {t_steps:.1f} s")
    print(f"total: {n} submissions in {total:.1f} s, {n / total:.2f} submissions per second ({jobs} jobs, "
          f"{TIMEOUT} s timeout, commands' start-up included); {jobs * total / n:.2f} s of a job per submission")
    if rows:
        print(f"\n{len(rows)} wrong verdict(s):\n{'submission':<36} {'expected':<14} got")
        for name, want, got in rows:
            print(f"{name:<36} {want:<14} {got}")
    if injected:
        print(f"a submission wrote outside its sandbox, or a derivation string ran code: {injected}")
    if reached:
        print("a cheat reached the network")
    overheads(folder)
    if with_dask:
        dask_rates(folder)
    if not keep:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    if not rows:
        print("all verdicts right")
    budget = BUDGET * n / 1000
    if total >= budget:
        print(f"over the {budget:.0f} s budget")
    return 0 if not rows and not injected and not reached and total < budget else 1


def _option(name: str, default: float) -> float:
    return float(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


if __name__ == "__main__":
    TIMEOUT = _option("--timeout", TIMEOUT)
    sys.exit(main(keep="--keep" in sys.argv, scale=int(_option("--scale", 4)), with_dask="--dask" in sys.argv,
                  jobs=int(_option("--jobs", 4))))
