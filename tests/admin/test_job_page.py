"""The live job page: its owner sees it, everyone else gets a 404 or the login page."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from jobqueue.models import Job

pytestmark = pytest.mark.django_db


def logged_in(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.create_user(username, password="pw"))
    return client


def test_the_owner_sees_the_job_and_the_poll_client() -> None:
    client = logged_in("owner")
    job = Job.objects.create(task="demo.sleep", owner=User.objects.get(username="owner"))

    response = client.get(reverse("job-page", args=[job.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-job-id="{job.pk}"' in html and "demo.sleep" in html
    assert 'src="/static/jobqueue/jobPage.js"' in html


def test_another_user_gets_404_and_a_stranger_the_login_page() -> None:
    owner = User.objects.create_user("owner", password="pw")
    job = Job.objects.create(task="demo.sleep", owner=owner)
    url = reverse("job-page", args=[job.pk])

    assert logged_in("someone-else").get(url).status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert Client().get(anonymous["Location"]).status_code == 200
