"""``python -m symbackprop``: the command line."""
from .cli import run

run()
