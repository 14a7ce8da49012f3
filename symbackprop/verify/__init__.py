"""Verifying hand work: claimed derivatives and derivations written step by step
(proved, numeric, conditional or wrong, with counterexamples)."""
from .claims import array_claims, verify, verify_derivation, verify_hand_derivation, verify_spec

__all__ = ["array_claims", "verify", "verify_derivation", "verify_hand_derivation", "verify_spec"]
