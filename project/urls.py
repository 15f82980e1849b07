"""URLs of the jobqueue site."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("jobqueue.api.urls")),
]
