"""Grading many submissions: one isolated process per submission, limits, verdicts, the
progress bar and the records."""
