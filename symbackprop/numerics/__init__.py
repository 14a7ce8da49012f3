"""Numbers: one evaluator (mpmath and float64), one domain model and sampler, the kink
model, numerical differentiation, and equality at high precision."""
