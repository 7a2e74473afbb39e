"""Operators: one framework step each (2a fetch, 2c publish, 2b deploy, 2d register)."""
