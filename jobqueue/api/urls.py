"""Routes of the API, mounted under /api/ by the project."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from jobqueue.api.views import health, jobs, queues, schedules, tasks, workers

router = DefaultRouter()
router.register("jobs", jobs.JobViewSet, basename="job")
router.register("tasks", tasks.TaskViewSet, basename="task")
router.register("queues", queues.QueueViewSet, basename="queue")
router.register("workers", workers.WorkerViewSet, basename="worker")
router.register("schedules", schedules.ScheduleViewSet, basename="schedule")

urlpatterns = [
    path("health/", health.HealthView.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    *router.urls,
]
