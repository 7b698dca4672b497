"""The admin: the outbox and the dead letters, read-only, and the dead letters' "Replay" action, with a real admin user.

Tasks run through the project served over real HTTP, delivered by a local
queue; the dead letters land in the project's database (``DeadLetterRecord``,
the default dead-letter store of a Django project).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client
from im_task_testsupport import dead_tasks, sink

from im_task import configure
from im_task.stores.deadletters import get_dead_letter_store
from im_task.transports.local import LocalTransport
from im_task_django.deadletters import DjangoDeadLetterStore
from im_task_django.models import DeadLetterRecord, OutboxTask

SECRET = "django-admin-tests-5c1e9a7f3b2d4e6a8c0f1b3d5e7a9c2e"
PASSWORD = "an-admin-password-for-tests"
CHANGELIST = "/admin/im_task_django/deadletterrecord/"


@pytest.fixture
def queue(server: str, tmp_path: Path) -> Iterator[LocalTransport]:
    """A local queue delivering to the served project over HTTP, installed; dead letters and users cleaned up."""
    configure(secret=SECRET)
    with LocalTransport(tmp_path / "queue.sqlite3", target=server, poll_interval=0.2) as transport:
        configure(transport=transport)
        try:
            yield transport
        finally:
            DeadLetterRecord.objects.all().delete()
            User.objects.all().delete()


@pytest.fixture
def admin_client(queue: LocalTransport) -> Client:
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    client = Client()
    assert client.login(username="admin", password=PASSWORD)
    return client


def one_dead_letter(queue: LocalTransport, marker: Path) -> DeadLetterRecord:
    DeadLetterRecord.objects.all().delete()  # the conformance suite's Django app may have left some in the database
    dead_tasks.fails_until_healed(str(marker), {"order": 42})
    assert queue.join(30)
    [record] = DeadLetterRecord.objects.all()
    return record


def test_a_django_project_keeps_its_dead_letters_in_its_database(queue: LocalTransport, tmp_path: Path) -> None:
    assert isinstance(get_dead_letter_store(), DjangoDeadLetterStore)
    record = one_dead_letter(queue, tmp_path / "healed")
    assert (record.queue, record.outcome, record.attempts) == ("default", "failed", 1)
    assert "PermanentTaskFailure" in record.error


def test_the_admin_lists_and_shows_dead_letters_read_only(
    admin_client: Client, queue: LocalTransport, tmp_path: Path
) -> None:
    record = one_dead_letter(queue, tmp_path / "healed")
    listing = admin_client.get(CHANGELIST)
    assert listing.status_code == 200
    assert record.name in listing.content.decode()
    assert "Replay the selected tasks" in listing.content.decode()
    page = admin_client.get(f"{CHANGELIST}{record.pk}/change/").content.decode()
    assert "fails_until_healed" in page
    assert "{&#x27;order&#x27;: 42}" in page
    assert "PermanentTaskFailure" in page
    assert 'name="_save"' not in page  # read-only: nothing to save
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.post(f"{CHANGELIST}{record.pk}/delete/").status_code == 403


def test_the_replay_action_sends_the_task_again_and_forgets_its_letter(
    admin_client: Client, queue: LocalTransport, tmp_path: Path
) -> None:
    marker = tmp_path / "healed"
    record = one_dead_letter(queue, marker)
    marker.touch()
    response = admin_client.post(CHANGELIST, {"action": "replay", "_selected_action": [record.pk]}, follow=True)
    assert response.status_code == 200
    assert "Replayed 1 task(s) under new names." in response.content.decode()
    assert queue.join(30)
    assert sink.calls == [("healed", str(marker))]
    assert not DeadLetterRecord.objects.exists()


def test_replay_needs_the_change_permission(queue: LocalTransport, tmp_path: Path) -> None:
    record = one_dead_letter(queue, tmp_path / "never")
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deadletterrecord"))
    client = Client()
    assert client.login(username="viewer", password=PASSWORD)
    listing = client.get(CHANGELIST).content.decode()
    assert record.name in listing
    assert "Replay the selected tasks" not in listing
    client.post(CHANGELIST, {"action": "replay", "_selected_action": [record.pk]})
    assert DeadLetterRecord.objects.filter(pk=record.pk).exists()


def test_the_outbox_is_shown_read_only(admin_client: Client) -> None:
    row = OutboxTask.objects.create(name="waiting-1", queue="default", url="/_ah/task/m/f", body=b"\x03", headers={})
    listing = admin_client.get("/admin/im_task_django/outboxtask/")
    assert listing.status_code == 200
    assert "waiting-1" in listing.content.decode()
    assert admin_client.get(f"/admin/im_task_django/outboxtask/{row.pk}/change/").status_code == 200
    assert admin_client.get("/admin/im_task_django/outboxtask/add/").status_code == 403


def test_manage_py_im_task_dead_lists_and_purges(
    queue: LocalTransport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = one_dead_letter(queue, tmp_path / "never")
    call_command("im_task_dead", dead_args=["list"])
    assert record.name in capsys.readouterr().out
    call_command("im_task_dead", dead_args=["purge", "--yes"])
    assert not DeadLetterRecord.objects.exists()
