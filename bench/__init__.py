"""`make bench`: what the insights pipeline and the rolling limiter cost, beside the alternatives.

`python -m bench` runs bench.suite once per database (PostgreSQL, then SQLite), each in its own
process because Django's settings are fixed at start-up, and bench.report turns the results into a
table and docs/benchmarks.md. Benchmarks are never part of the test suite.
"""
