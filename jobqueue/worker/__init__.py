"""runworker's parts: a supervisor process that claims and acknowledges jobs,
and child processes that run them, one role per module."""
