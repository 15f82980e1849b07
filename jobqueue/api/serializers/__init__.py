"""The API's JSON, one module per resource: jobs, tasks, queues, workers, schedules, the
health probe, and the error body every failure shares. A new resource's JSON arrives as
a module of its own.
"""
