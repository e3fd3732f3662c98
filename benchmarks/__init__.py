"""Benchmarks of asyncmachine-trio against the Python peers (issue 6).

Run them with ``nox -s bench`` or ``python -m benchmarks.run``; see ``benchmarks/README.md``.
"""
