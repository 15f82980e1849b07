"""The REST API: submit, follow, cancel and retry jobs; see queues, workers and health."""
