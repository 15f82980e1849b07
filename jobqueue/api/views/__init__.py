"""The API's views, one module per resource: jobs, tasks, queues, workers, schedules, and
the health probe. Thin hooks around the serializers, the backend and the named queries;
a new resource arrives as a module of its own, routed in jobqueue/api/urls.py.
"""
