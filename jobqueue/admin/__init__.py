"""The Django admin: history, guarded staff actions and queue health, one module per model.

Django's autodiscovery imports this package; importing the model modules registers
their ModelAdmins. ``changelist`` keeps the job list fast on millions of rows, ``audit``
writes staff actions to the admin log, ``times`` shows times, ``bulk`` and ``display``
hold the job list's actions and its pieces.
"""

from jobqueue.admin import jobs, limits, schedules, workers  # noqa: F401  (they register)
