"""The curated mutants: one README promise removed or weakened per entry, as data.

Each entry names the file, the exact text to replace (it must occur exactly once, else the
mutant is STALE and the run fails until it is updated), its replacement, the guarding tests
(the first listed should be the fastest to fail) and the promise, in the README's words.
Keep the old text short and specific: it must survive unrelated edits around it.

Run them with ``make mutants`` (scripts/mutants.py). tests/README.md maps each promise to its
tests and mutants.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    promise: str


W = "tests/test_worker.py::"
Q = "tests/test_queries.py::"
D = "tests/test_decisions.py::"
C = "tests/api/test_contract.py::"
P = "tests/api/test_promises.py::"
A = "tests/admin/test_job_admin.py::"
B = "tests/admin/test_browser.py::"
U = "tests/test_purge.py::"

MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------ Running workers
    Mutant(
        "claim-skip-locked",
        "jobqueue/queries.py",
        "LIMIT %(demand)s\n    FOR UPDATE SKIP LOCKED",
        "LIMIT %(demand)s\n    FOR UPDATE",
        (
            Q + "test_a_claim_skips_a_row_locked_elsewhere_instead_of_waiting",
            "tests/api/test_concurrency.py::test_cancel_that_holds_the_row_while_a_claim_runs_wins",
        ),
        "the claim locks rows with FOR UPDATE SKIP LOCKED",
    ),
    Mutant(
        "claim-order",
        "jobqueue/queries.py",
        "ORDER BY priority DESC, scheduled_at, id\n    LIMIT %(demand)s",
        "ORDER BY id\n    LIMIT %(demand)s",
        (Q + "test_claim_order_is_priority_then_schedule_then_creation",),
        "claim order: priority, then scheduled_at, then creation",
    ),
    Mutant(
        "claim-before-due",
        "jobqueue/queries.py",
        "WHERE status = 'queued' AND scheduled_at <= now() {queue_filter}",
        "WHERE status = 'queued' {queue_filter}",
        (
            Q + "test_claim_order_is_priority_then_schedule_then_creation",
            W + "test_delayed_jobs_wait_for_their_time",
        ),
        "delayed jobs and retries wait for their time",
    ),
    Mutant(
        "claim-queue-filter",
        "jobqueue/queries.py",
        'CLAIM_QUEUES = CLAIM.format(queue_filter="AND queue = ANY(%(queues)s)")',
        'CLAIM_QUEUES = CLAIM.format(queue_filter="")',
        (W + "test_queue_selection",),
        "runworker --queues serves only those queues",
    ),
    Mutant(
        "ack-guard-dropped",
        "jobqueue/queries.py",
        "WHERE j.id = o.id AND j.worker_id = %(worker)s AND j.status = 'running'",
        "WHERE j.id = o.id",
        (Q + "test_an_outcome_is_recorded_only_by_the_worker_that_holds_the_job",),
        "an outcome is recorded only if the job is still held by the worker that ran it",
    ),
    Mutant(
        "errors-not-kept",
        "jobqueue/queries.py",
        "ELSE j.errors || o.error END",
        "ELSE o.error END",
        (W + "test_failed_attempts_are_retried_with_backoff_and_kept",),
        "every attempt's error is kept in errors",
    ),
    Mutant(
        "retry-no-backoff",
        "jobqueue/worker/outcome.py",
        "scheduled_at=now + timedelta(seconds=retry_delay)",
        "scheduled_at=now",
        (D + "test_failure_with_attempts_left_is_requeued_after_the_delay",),
        "a failed attempt is retried after the backoff",
    ),
    Mutant(
        "backoff-not-doubling",
        "jobqueue/worker/backoff.py",
        "base * 2 ** min(attempt - 1, 62)",
        "base",
        (D + "test_backoff_doubles_per_attempt_within_its_jitter",),
        "backoff BACKOFF_BASE * 2**(attempt-1), half of it random",
    ),
    Mutant(
        "max-attempts-ignored",
        "jobqueue/worker/outcome.py",
        'case "failed" if attempts < max_attempts:',
        'case "failed" if True:',
        (D + "test_failure_of_the_last_attempt_fails_the_job",),
        "retried until max_attempts, then failed",
    ),
    Mutant(
        "timeout-clock-not-started",
        "jobqueue/worker/executor.py",
        "self.clock.start(job.timeout)",
        "self.clock.start(None)",
        (W + "test_timeouts_stop_the_job_and_count_as_a_failed_attempt",),
        "the child raises JobTimeout inside the task at the timeout",
    ),
    Mutant(
        "timeout-not-killed",
        "jobqueue/worker/supervisor.py",
        "child.kill(reason)",
        "pass",
        (
            W + "test_a_job_that_ignores_cancel_is_stopped_after_the_grace_period",
            W + "test_timeouts_stop_the_job_and_count_as_a_failed_attempt",
        ),
        "a task that does not stop within CANCEL_GRACE is killed by the supervisor",
    ),
    Mutant(
        "crash-no-new-child",
        "jobqueue/worker/supervisor.py",
        "if self.stopping_at is None:\n            self._add_child()",
        "if False:\n            self._add_child()",
        (W + "test_a_crashed_job_with_attempts_left_is_retried",),
        "after a crash the supervisor forks a new child",
    ),
    Mutant(
        "crash-signal-lost",
        "jobqueue/worker/children.py",
        'return f"the child process was killed by {signal.Signals(-code).name}"',
        'return "the child process died"',
        (W + "test_a_crashing_job_takes_down_only_its_child",),
        "a crash is recorded as ChildCrashed with the exit code or signal",
    ),
    Mutant(
        "rescue-exhausted-requeued",
        "jobqueue/queries.py",
        "WHEN j.attempts < j.max_attempts THEN 'queued'\n            ELSE 'failed' END",
        "WHEN j.attempts < j.max_attempts THEN 'queued'\n            ELSE 'queued' END",
        (Q + "test_rescue_requeues_fails_or_cancels_by_attempts_and_cancel_request",),
        "a rescued job with no attempts left fails with WorkerLost",
    ),
    Mutant(
        "rescue-cancel-ignored",
        "jobqueue/queries.py",
        "WHEN j.cancel_requested THEN 'cancelled'",
        "WHEN false THEN 'cancelled'",
        (Q + "test_rescue_requeues_fails_or_cancels_by_attempts_and_cancel_request",),
        "a rescued job whose cancel was requested ends cancelled",
    ),
    Mutant(
        "rescue-ignores-lease",
        "jobqueue/queries.py",
        "WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => %(lease)s)",
        "WHERE status = 'running'",
        (Q + "test_rescue_requeues_fails_or_cancels_by_attempts_and_cancel_request",),
        "only jobs whose heartbeat is older than LEASE are rescued",
    ),
    Mutant(
        "heartbeat-no-lease-renewal",
        "jobqueue/queries.py",
        "UPDATE jobqueue_job SET heartbeat_at = now()",
        "UPDATE jobqueue_job SET heartbeat_at = heartbeat_at",
        (Q + "test_a_heartbeat_renews_the_lease_of_the_workers_jobs",),
        "every HEARTBEAT_INTERVAL the worker updates its running jobs",
    ),
    Mutant(
        "pdeathsig-noop",
        "jobqueue/worker/child.py",
        "libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)",
        "libc.prctl(PR_SET_PDEATHSIG, 0)",
        (W + "test_children_die_with_their_supervisor",),
        "children die with their supervisor (PR_SET_PDEATHSIG)",
    ),
    Mutant(
        "progress-cancel-check",
        "jobqueue/progress.py",
        "    if _current.report(None if percent is None else float(percent), message):\n"
        '        raise JobCancelled(f"job {_current.job_id} was cancelled")',
        "    _current.report(None if percent is None else float(percent), message)",
        (W + "test_cancel_a_running_job_stops_it_at_its_next_progress_call",),
        "a running job stops at its next progress() call when cancelled",
    ),
    Mutant(
        "cancel-grace-not-enforced",
        "jobqueue/worker/supervisor.py",
        "deadline = min(deadline, job.cancel_seen_at + grace)",
        "deadline = deadline",
        (W + "test_a_job_that_ignores_cancel_is_stopped_after_the_grace_period",),
        "a job ignoring a cancel is killed CANCEL_GRACE after the worker saw the request",
    ),
    Mutant(
        "cancel-not-seen-by-heartbeat",
        "jobqueue/queries.py",
        "(SELECT array_agg(id) FROM held WHERE cancel_requested)",
        "(SELECT array_agg(id) FROM held WHERE false)",
        (Q + "test_a_heartbeat_renews_the_lease_of_the_workers_jobs",),
        "the worker sees a running job's cancel request",
    ),
    Mutant(
        "worker-listen-removed",
        "jobqueue/worker/supervisor.py",
        'self.db.execute(f"LISTEN {queries.QUEUE_CHANNEL}")',
        'self.db.execute("SELECT 1")',
        (W + "test_an_idle_worker_wakes_on_notify_not_on_its_poll",),
        "the worker wakes on LISTEN/NOTIFY",
    ),
    Mutant(
        "shutdown-no-grace",
        "jobqueue/worker/supervisor.py",
        "self.stopping_at = time.monotonic() + self.options.shutdown_timeout",
        "self.stopping_at = time.monotonic()",
        (W + "test_sigterm_lets_the_running_job_finish_and_exits_zero",),
        "SIGTERM lets running jobs finish within --shutdown-timeout",
    ),
    Mutant(
        "shutdown-no-give-back",
        "jobqueue/worker/supervisor.py",
        "queries.give_back(cur, worker=self.worker_id, ids=unfinished)",
        "pass",
        (W + "test_sigterm_gives_back_a_job_that_outlives_the_shutdown_timeout",),
        "SIGTERM gives back the rest to queued",
    ),
    Mutant(
        "give-back-no-refund",
        "jobqueue/queries.py",
        "SET status = 'queued', attempts = GREATEST(attempts - 1, 0), worker_id = NULL, "
        "heartbeat_at = NULL\nWHERE id = ANY(%(ids)s)",
        "SET status = 'queued', worker_id = NULL, heartbeat_at = NULL\nWHERE id = ANY(%(ids)s)",
        (Q + "test_shutdown_gives_a_job_back_with_its_attempt_refunded",),
        "a job given back has its interrupted attempt refunded",
    ),
    Mutant(
        "second-signal-ignored",
        "jobqueue/worker/supervisor.py",
        "self.stopping_at = time.monotonic()\n",
        "pass\n",
        (W + "test_a_second_sigterm_stops_at_once",),
        "a second signal stops at once",
    ),
    Mutant(
        "outcomes-dropped-on-disconnect",
        "jobqueue/worker/supervisor.py",
        "self.reconnect_at = time.monotonic() + self.reconnect_delay",
        "self.outcomes.clear()\n"
        "        self.reconnect_at = time.monotonic() + self.reconnect_delay",
        (W + "test_outcomes_wait_while_the_database_is_down_and_reconnects_back_off",),
        "a lost connection: children keep running, outcomes wait",
    ),
    Mutant(
        "reconnect-no-backoff",
        "jobqueue/worker/supervisor.py",
        "self.reconnect_delay = min(RECONNECT_MAX_DELAY, self.reconnect_delay * 2)",
        "self.reconnect_delay = min(RECONNECT_MAX_DELAY, self.reconnect_delay * 1)",
        (W + "test_outcomes_wait_while_the_database_is_down_and_reconnects_back_off",),
        "the supervisor reconnects with backoff (0.5 s doubling)",
    ),
    Mutant(
        "worker-never-rescues",
        "jobqueue/worker/supervisor.py",
        "if now >= self.next_rescue:",
        "if False:",
        (W + "test_job_of_a_killed_worker_is_rescued_and_finishes_elsewhere",),
        "any live worker rescues running jobs whose heartbeat is older than LEASE",
    ),
    Mutant(
        "pipeline-behind-unseen-task",
        "jobqueue/worker/supervisor.py",
        "UNSEEN_TASK_SECONDS = 1.0",
        "UNSEEN_TASK_SECONDS = 0.0",
        (W + "test_short_jobs_are_not_queued_behind_a_long_one",),
        "no job waits in a child's queue behind a task known to be slow or not seen yet",
    ),
    # ------------------------------------------------------------ REST API
    Mutant(
        "cancel-queued-not-immediate",
        "jobqueue/queries.py",
        "status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END",
        "status = status",
        (C + "test_cancel_queued_then_409_then_retry_then_409",),
        "a queued job is cancelled at once",
    ),
    Mutant(
        "cancel-finished-job",
        "jobqueue/queries.py",
        "WHERE id = ANY(%(ids)s) AND status IN ('queued', 'running')\n    RETURNING id",
        "WHERE id = ANY(%(ids)s)\n    RETURNING id",
        (C + "test_cancel_queued_then_409_then_retry_then_409",),
        "cancel answers 409 once the job is finished",
    ),
    Mutant(
        "retry-any-state",
        "jobqueue/queries.py",
        "WHERE id = ANY(%(ids)s) AND status IN ('failed', 'cancelled')",
        "WHERE id = ANY(%(ids)s)",
        (C + "test_cancel_queued_then_409_then_retry_then_409",),
        "retry: failed/cancelled -> queued, 409 otherwise",
    ),
    Mutant(
        "api-idempotency-across-users",
        "jobqueue/api/views.py",
        "return Job.objects.owned_by(self.request.user).filter(idempotency_key=key).first()",
        "return Job.objects.filter(idempotency_key=key).first()",
        (C + "test_idempotency_key_in_body_or_header_returns_the_original_with_200",),
        "the same Idempotency-Key again: 200 with the same job (the caller's own)",
    ),
    Mutant(
        "api-workers-for-anyone",
        "jobqueue/api/views.py",
        "permission_classes = [IsAdminUser]",
        "permission_classes = [AllowAny]",
        (C + "test_workers_for_staff_only",),
        "/api/workers/ is staff only",
    ),
    Mutant(
        "long-poll-notify-ignored",
        "jobqueue/api/events.py",
        "self._wake(notify.payload)",
        "pass",
        (C + "test_long_poll_returns_when_progress_changes",),
        "?wait=N returns as soon as the job changes",
    ),
    Mutant(
        "api-ownership-filter",
        "jobqueue/api/views.py",
        'if self.action == "list" or not sees_all_jobs(user):',
        "if False:",
        (
            C + "test_list_is_own_jobs_newest_first_filtered_and_paginated",
            C + "test_get_own_job_and_others_are_404",
        ),
        "GET /api/jobs/ lists the caller's own jobs; other users' jobs are 404",
    ),
    Mutant(
        "api-staff-permission",
        "jobqueue/api/permissions.py",
        "return bool(perm and request.user.is_staff and request.user.has_perm(perm))",
        "return bool(request.user.is_staff)",
        (C + "test_staff_with_permissions_see_and_act_on_all_jobs",),
        "staff act on other users' jobs only with the model permission",
    ),
    Mutant(
        "api-traceback-for-all",
        "jobqueue/api/views.py",
        "show_traceback=request.user.is_staff",
        "show_traceback=True",
        (C + "test_traceback_is_shown_to_staff_only",),
        "tracebacks are shown to staff only",
    ),
    Mutant(
        "health-always-200",
        "jobqueue/api/views.py",
        "return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)",
        "return Response(body)",
        (P + "test_health_answers_503_when_the_database_is_down",),
        "/api/health/ answers 503 when the database is down",
    ),
    Mutant(
        "estimated-wait-without-durations",
        "jobqueue/api/serializers.py",
        "    if mean is None:\n        return None\n",
        "    if mean is None:\n        mean = 1\n",
        (P + "test_estimated_wait_is_null_without_a_worker_for_the_queue_or_recent_durations",),
        "estimated wait is null when nothing finished in the queue in the last hour",
    ),
    Mutant(
        "estimated-wait-without-workers",
        "jobqueue/api/serializers.py",
        "    if not capacity:\n        return None\n",
        "    if not capacity:\n        capacity = 1\n",
        (P + "test_estimated_wait_is_null_without_a_worker_for_the_queue_or_recent_durations",),
        "estimated wait is null when no live worker serves the queue",
    ),
    Mutant(
        "estimated-wait-floor",
        "jobqueue/api/serializers.py",
        "return round(max(float(until_due), ahead * float(mean) / capacity), 3)",
        "return round(ahead * float(mean) / capacity, 3)",
        (P + "test_estimated_wait_is_never_less_than_the_time_until_the_job_is_due",),
        "estimated wait is never less than the time until the job is due",
    ),
    # ------------------------------------------------------------ admin, purge, live page
    Mutant(
        "admin-cancel-permission",
        "jobqueue/admin.py",
        'return request.user.has_perm("jobqueue.cancel_job")',
        "return True",
        (A + "test_cancel_and_purge_are_refused_without_their_permission",),
        "the admin's cancel needs cancel_job",
    ),
    Mutant(
        "admin-purge-permission",
        "jobqueue/admin.py",
        'return request.user.has_perm("jobqueue.purge_jobs")',
        "return True",
        (A + "test_cancel_and_purge_are_refused_without_their_permission",),
        "the admin's purge needs purge_jobs",
    ),
    Mutant(
        "admin-retry-permission",
        "jobqueue/admin.py",
        'return request.user.has_perm("jobqueue.retry_job")',
        "return True",
        (A + "test_a_user_without_retry_permission_cannot_post_the_action",),
        "the admin's retry needs retry_job",
    ),
    Mutant(
        "admin-count-unbounded",
        "jobqueue/admin_list.py",
        "capped = queryset.order_by()[: COUNT_CAP + 1].count()",
        "capped = queryset.order_by().count()",
        (A + "test_exact_counts_up_to_10000_and_never_a_count_of_the_whole_table",),
        "the admin never counts the whole table",
    ),
    Mutant(
        "admin-count-cap",
        "jobqueue/admin_list.py",
        "COUNT_CAP = 10_000",
        "COUNT_CAP = 1_000",
        (A + "test_exact_counts_up_to_10000_and_never_a_count_of_the_whole_table",),
        "exact counts up to 10,000, an estimate beyond",
    ),
    Mutant(
        "admin-purge-unfinished",
        "jobqueue/queries.py",
        "WHERE id = ANY(%(ids)s) AND status IN ('succeeded', 'failed', 'cancelled')",
        "WHERE id = ANY(%(ids)s)",
        (U + "test_the_admin_purge_deletes_only_jobs_still_finished_when_it_runs",),
        "the admin's purge deletes finished jobs only",
    ),
    Mutant(
        "purge-status-widened",
        "jobqueue/queries.py",
        "    WHERE status IN ('succeeded', 'failed', 'cancelled') AND status = ANY(%(statuses)s)\n"
        "      AND finished_at < %(before)s\n      AND finished_at >=",
        "    WHERE true\n      AND finished_at < %(before)s\n      AND finished_at >=",
        (U + "test_queued_and_running_jobs_are_never_deleted",),
        "purge_jobs never touches queued or running jobs",
    ),
    Mutant(
        "purge-newest-first",
        "jobqueue/queries.py",
        "ORDER BY finished_at, id\n    LIMIT %(limit)s",
        "ORDER BY finished_at DESC, id\n    LIMIT %(limit)s",
        (U + "test_purge_deletes_the_oldest_first",),
        "purge_jobs deletes finished jobs oldest first",
    ),
    Mutant(
        "purge-waits-on-locks",
        "jobqueue/queries.py",
        "FOR UPDATE SKIP LOCKED\n)\nDELETE FROM jobqueue_job AS j USING doomed",
        "FOR UPDATE\n)\nDELETE FROM jobqueue_job AS j USING doomed",
        (U + "test_a_row_locked_elsewhere_is_passed_over_not_waited_for",),
        "purge_jobs skips locked rows instead of waiting",
    ),
    Mutant(
        "job-page-for-anyone",
        "jobqueue/views.py",
        "get_object_or_404(Job.objects.owned_by(request.user), pk=pk)",
        "get_object_or_404(Job.objects.all(), pk=pk)",
        ("tests/admin/test_job_page.py::test_another_user_gets_404_and_a_stranger_the_login_page",),
        "a job's owner (only) can watch it at /jobs/<id>/",
    ),
    Mutant(
        "polljob-no-backoff",
        "jobqueue/static/jobqueue/pollJob.js",
        "await sleep(retryAfter || backoff(failures++, maxBackoffMs), aborted);",
        "await sleep(retryAfter || 0, aborted);",
        (B + "test_poll_job_backs_off_on_server_errors_then_follows_the_job_to_its_end",),
        "pollJob long-polls with backoff",
    ),
    Mutant(
        "polljob-abort-noop",
        "jobqueue/static/jobqueue/pollJob.js",
        "return { abort: () => controller.abort(), done };",
        "return { abort: () => {}, done };",
        (B + "test_poll_job_abort_stops_polling_and_resolves_done_with_null",),
        "pollJob returns {abort, done}: abort stops it",
    ),
]
