"""The declaration language: the function table, the safe parser, the printer back to
text, the stable rewrites, and the reader of matrix steps in hand derivations."""
