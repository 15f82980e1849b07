"""The site's landing page: where a new user finds the admin, the API docs and their jobs."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobqueue.models import Job

# The landing page lists this many of the user's newest jobs.
NEWEST_JOBS = 20


def home(request: HttpRequest) -> HttpResponse:
    """Links to the admin, the queue health page and the API docs, and the user's newest
    jobs (each to its live page); the admin's "View site" comes here."""
    jobs = (
        Job.objects.owned_by(request.user).only("id", "task", "status", "created_at")[:NEWEST_JOBS]
        if request.user.is_authenticated
        else []
    )
    return render(request, "home.html", {"jobs": jobs})
