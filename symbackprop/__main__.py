"""``python -m symbackprop``: the command line."""
from .cli import main

raise SystemExit(main())
