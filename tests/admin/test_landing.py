"""The site's landing page and the admin index's way to the health page."""

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from jobqueue.models import Job


def test_the_landing_page_links_the_admin_health_docs_and_the_users_own_jobs(db) -> None:
    owner = User.objects.create_user("owner", password="pw")
    mine = Job.objects.create(task="demo.echo", owner=owner)
    theirs = Job.objects.create(task="demo.sleep", owner=User.objects.create_user("other"))
    client = Client()

    anonymous = client.get("/").content.decode()
    client.force_login(owner)
    logged_in = client.get("/").content.decode()

    for url in ("/admin/", "/admin/jobqueue/job/health/", "/api/docs/"):
        assert f'href="{url}"' in anonymous
    assert 'href="/accounts/login/?next=/"' in anonymous
    assert f'href="/jobs/{mine.pk}/"' in logged_in
    assert f"/jobs/{theirs.pk}/" not in logged_in


def test_the_admin_index_links_the_health_page(db) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))

    html = client.get(reverse("admin:index")).content.decode()

    assert f'<a href="{reverse("admin:jobqueue_job_health")}">Queue and worker health</a>' in html
    assert "Recent actions" in html  # Django's own index is still there
