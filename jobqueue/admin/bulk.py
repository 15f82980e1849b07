"""The job list's bulk actions: what each one does, to which jobs, and how it asks first."""

from dataclasses import dataclass

from jobqueue.models import FINISHED, JobStatus

RETRYABLE = {JobStatus.FAILED, JobStatus.CANCELLED}
CANCELLABLE = {JobStatus.QUEUED, JobStatus.RUNNING}


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkAction:
    """What a bulk action says: its name, verb, the jobs it changes and, after, how many."""

    # The action's name in the changelist form, posted back on confirmation.
    name: str
    verb: str
    # The message once done; ``{n}`` is how many jobs the action changed.
    done: str
    # Statuses the action changes; the rest of a selection is left as it is.
    applies_to: frozenset[str]
    # What happens to the jobs it changes, and to the others.
    effect: str
    # Purge deletes history for good, so it asks even for a single job.
    always_confirm: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectedGroup:
    """One line of a confirmation page: the selected jobs of one status in one queue."""

    status: str
    queue: str
    jobs: int
    changes: bool  # whether the action changes these jobs


RETRY = BulkAction(
    name="retry_jobs",
    verb="retry",
    done="Re-queued {n} jobs (only failed or cancelled ones).",
    applies_to=frozenset(RETRYABLE),
    effect="Failed and cancelled jobs go back to the queue with a fresh attempt budget; "
    "their error history stays. Other jobs are not changed.",
)
CANCEL = BulkAction(
    name="cancel_jobs",
    verb="cancel",
    done="Cancelled {n} jobs (running ones stop at their next check).",
    applies_to=frozenset(CANCELLABLE),
    effect="Queued jobs are cancelled at once; running jobs are asked to stop and end "
    "cancelled at their next check. Finished jobs are not changed.",
)
PURGE = BulkAction(
    name="purge_jobs",
    verb="purge",
    done="Purged {n} finished jobs (others are kept).",
    applies_to=frozenset(FINISHED),
    effect="Finished jobs are deleted with their results and error history, for good. "
    "Queued and running jobs are kept.",
    always_confirm=True,
)
