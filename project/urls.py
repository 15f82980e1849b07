"""URLs of the jobqueue site."""

from django.contrib import admin
from django.urls import include, path

from jobqueue.views import job_page
from project.views import home

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("api/", include("jobqueue.api.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("jobs/<int:pk>/", job_page, name="job-page"),
]
