"""Who may see and act on a job: its owner, or staff holding the model permission."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from jobqueue.models import Job

# The model permission staff need to act on other users' jobs, per action.
STAFF_PERMISSIONS = {
    "retrieve": "jobqueue.view_job",
    "events": "jobqueue.view_job",
    "cancel": "jobqueue.cancel_job",
    "destroy": "jobqueue.cancel_job",
    "retry": "jobqueue.retry_job",
}


def sees_all_jobs(user: Any) -> bool:
    """Staff with the view permission may look up any job; everyone else only their own."""
    return bool(user.is_staff and user.has_perm("jobqueue.view_job"))


class IsOwnerOrPermittedStaff(BasePermission):
    """The owner may do anything to a job; staff need the permission for the action.

    Jobs a user may not see are filtered out of the queryset before this
    runs, so they are 404s; this only turns a visible job into a 403.
    """

    message = "Only the job's owner, or staff with the permission for this action, may do this."

    def has_object_permission(self, request: Request, view: Any, obj: Job) -> bool:
        if obj.owner_id == request.user.pk:
            return True
        perm = STAFF_PERMISSIONS.get(view.action)
        return bool(perm and request.user.is_staff and request.user.has_perm(perm))


class CanPauseQueues(BasePermission):
    """Pausing and resuming queues: staff holding the pause_queue permission."""

    message = "Pausing and resuming queues needs staff with the 'pause_queue' permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_staff and user.has_perm("jobqueue.pause_queue"))
