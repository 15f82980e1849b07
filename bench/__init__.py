"""jobqueue's benchmark suite: the same workloads for jobqueue and its peers, side by side.

``python -m bench`` installs each peer from PyPI into its own virtual
environment under bench/.venvs/, gives every system a fresh database on one
PostgreSQL server, runs each workload at least twice, and prints the medians
with the ratio jobqueue/peer (also written to bench/results/). ``--smoke`` is
the seconds-long CI version: jobqueue only, tiny sizes, non-zero exit on error.
"""
