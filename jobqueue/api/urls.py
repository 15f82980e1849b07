"""Routes of the API, mounted under /api/ by the project."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from jobqueue.api import views

router = DefaultRouter()
router.register("jobs", views.JobViewSet, basename="job")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("queues", views.QueueViewSet, basename="queue")
router.register("workers", views.WorkerViewSet, basename="worker")
router.register("schedules", views.ScheduleViewSet, basename="schedule")

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    *router.urls,
]
