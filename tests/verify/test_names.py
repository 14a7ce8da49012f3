"""No name a student writes resolves to a library's object: every name numpy, mpmath and
SymPy export, used as a symbol, in a true and in a false chain, judged at a point.

Oracle: the arithmetic of the chain itself (``2*(a + b + ...)`` equals ``2*a + 2*b + ...``
for any values; adding ``a/1000`` makes it differ) at a point where every name is 0.5 or more.
"""
import json

import mpmath
import numpy
import pytest
import sympy

from symbackprop.lang.functions import BY_NAME
from symbackprop.lang.parser import is_identifier
from symbackprop.verify import verify

NAMES = sorted(n for n in {n for module in (numpy, mpmath, sympy) for n in dir(module)}
               if is_identifier(n) and n not in BY_NAME)  # e, E, I, oo, mpf, atan2's kin, ... (1612 names)
CHUNKS = [NAMES[i:i + 60] for i in range(0, len(NAMES), 60)]


def chain_file(tmp_path, names, steps, k):
    symbols = "\n".join(f'{n} = "real"' for n in names)
    at = ", ".join(f"{n} = {0.5 + j / 64}" for j, n in enumerate(names))
    path = tmp_path / f"chunk{k}.toml"
    path.write_text(f'name = "names"\n[symbols]\n{symbols}\n[[chains]]\nof = "t"\nat = {{ {at} }}\n'
                    f"steps = {json.dumps(steps)}\n")
    return path


@pytest.mark.parametrize("k", range(len(CHUNKS)))
def test_every_exported_name_is_the_students_own_symbol(tmp_path, k):
    names = CHUNKS[k]
    total = " + ".join(names)
    true = verify(chain_file(tmp_path, names, [f"2*({total})", " + ".join(f"2*{n}" for n in names)], k))
    assert true.ok, true.text()
    false = verify(chain_file(tmp_path, names, [f"2*({total})", f"2*({total}) + {names[0]}/1000"], k))
    assert not false.ok, false.text()
