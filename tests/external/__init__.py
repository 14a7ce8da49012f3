"""The external-style suite (issue 14): layer code published by others, in the packages of
``requirements.txt``, judged by verify-layer through thin adapters (``adapters.py``) against
declarations (``cases.py``), with verdicts read from the code and the math.  ``python -m
tests.external.tally`` prints the tally; ``KNOWN_WRONG.md`` lists where the tool is wrong today."""
