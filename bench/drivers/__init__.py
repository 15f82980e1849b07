"""One script per system under test, each run with that system's own interpreter.

A driver never imports the harness (``bench``) or another system: it gets a
DSN and a workload on its command line and prints one JSON object. This keeps
each peer in its own virtual environment, with its own dependency versions.
"""
