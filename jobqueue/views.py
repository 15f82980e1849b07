"""The live job page: a job's owner watches it run, in the browser, with no code of their own."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from jobqueue.models import Job


@login_required
def job_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The owner's page for job ``pk``; anyone else gets a 404, as in the API."""
    job = get_object_or_404(Job.objects.owned_by(request.user), pk=pk)
    return render(request, "jobqueue/job_page.html", {"job": job})
