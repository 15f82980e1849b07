"""When a job may run: periodic schedules, unique jobs, queue limits and pauses.

- ``periodic``: schedules declared in settings, enqueued once per tick by whichever
  worker takes the tick (it enqueues through the backend's public API);
- ``unique``: the rule that keeps a second live job with the same key out, decided in
  the enqueue statement itself;
- ``limits``: global concurrency and rate limits per queue, parsed from settings and
  enforced by the claim (the ``queries`` package holds the SQL);
- ``pauses``: pausing and resuming queues, honoured by every claim.

``limits`` and ``unique`` are rules with no import of the rest of the package, so the
core (settings, models, the backend, the claim) may consult them; ``periodic`` and
``pauses`` act through the core and sit above it (docs/architecture.md).
"""
