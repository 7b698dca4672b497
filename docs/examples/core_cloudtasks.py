"""The Cloud Tasks transport, against a small Cloud Tasks server of this script's own.

The server (gRPC, on 127.0.0.1) records the tasks it is asked to create and,
like Cloud Tasks, refuses a name used twice; it can lose the answer of the
first call, to show that a retried creation is safe. Nothing leaves the
machine. The script exits with status 0 only if every check holds.
"""

import datetime as dt
from concurrent import futures

import grpc
from google.cloud import tasks_v2

from im_task import TaskAlreadyExistsError, TaskTooLargeError, configure, task
from im_task.transports import CloudTasksTransport
from im_task.transports.cloudtasks import EnqueueRetry


class TinyCloudTasks:
    """CreateTask only: names are unique; ``lose_next_answer`` creates the task, then answers UNAVAILABLE."""

    def __init__(self):
        self.tasks = {}
        self.calls = 0
        self.lose_next_answer = False
        handler = grpc.unary_unary_rpc_method_handler(
            self.create_task,
            request_deserializer=tasks_v2.CreateTaskRequest.deserialize,
            response_serializer=tasks_v2.Task.serialize,
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("google.cloud.tasks.v2.CloudTasks", {"CreateTask": handler})]
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def create_task(self, request, context):
        self.calls += 1
        created = tasks_v2.Task(request.task)
        if created.name in self.tasks:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "Requested entity already exists")
        self.tasks[created.name] = created
        if self.lose_next_answer:
            self.lose_next_answer = False
            context.abort(grpc.StatusCode.UNAVAILABLE, "the answer was lost")
        return created


fake = TinyCloudTasks()
try:
    # [start app-engine]
    transport = CloudTasksTransport(
        "my-project",
        "europe-west1",
        emulator_host=fake.address,  # or $CLOUD_TASKS_EMULATOR_HOST; leave out in production
        environ={"GAE_SERVICE": "api", "GAE_VERSION": "v42"},  # on App Engine: the real environment
    )
    configure(transport=transport, secret="an-example-secret-of-32-or-more-bytes")

    @task(queue="mail", countdown=60, retry_options={"task_retry_limit": 5})
    def send_reminder(user_id):
        print("reminding", user_id)

    handle = send_reminder(42)
    # [end app-engine]
    created = fake.tasks[f"projects/my-project/locations/europe-west1/queues/mail/tasks/{handle.name}"]
    request = created.app_engine_http_request
    assert request.relative_uri == "/_ah/task/__main__/send_reminder", request.relative_uri
    assert (request.app_engine_routing.service, request.app_engine_routing.version) == ("api", "v42")
    assert created.retry_config.max_attempts == 6
    assert created.schedule_time > dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=50)

    # [start targets]
    send_reminder.using(target="v43.worker")(1)  # legacy form "version.service"; "service" alone works too
    # [end targets]
    routed = [t.app_engine_http_request.app_engine_routing for t in fake.tasks.values()]
    assert (routed[-1].service, routed[-1].version) == ("worker", "v43")

    # [start names]
    fake.lose_next_answer = True  # the first try creates the task but its answer is lost
    assert send_reminder.using(name="reminder-7")(7).name == "reminder-7"  # retried: ALREADY_EXISTS means created
    try:
        send_reminder.using(name="reminder-7")(7)  # a second call with the name is refused
    except TaskAlreadyExistsError:
        pass
    else:
        raise AssertionError("a reused name was accepted")
    # [end names]
    assert fake.calls == 5, fake.calls  # 2 tasks, then 2 tries of reminder-7, then the refused one

    # [start http]
    run = CloudTasksTransport(
        "my-project",
        "europe-west1",
        base_url="https://tasks-abc123-ew.a.run.app",
        service_account_email="tasks@my-project.iam.gserviceaccount.com",
        emulator_host=fake.address,
        retry=EnqueueRetry(attempts=3),
    )
    configure(transport=run)
    handle = send_reminder(8)
    # [end http]
    http = fake.tasks[f"projects/my-project/locations/europe-west1/queues/mail/tasks/{handle.name}"].http_request
    assert http.url == "https://tasks-abc123-ew.a.run.app/_ah/task/__main__/send_reminder"
    assert http.oidc_token.service_account_email == "tasks@my-project.iam.gserviceaccount.com"
    assert http.oidc_token.audience == "https://tasks-abc123-ew.a.run.app"

    # [start size]
    configure(payload_store="none")  # by default a task over the limit goes to the payload store (see payloads)
    try:
        send_reminder("x" * 2_000_000)  # over the 1 MB of HTTP targets (100 KB for App Engine targets)
    except TaskTooLargeError as exc:
        print("refused before sending:", exc)
    # [end size]
    assert fake.calls == 6
    run.close()
    transport.close()
finally:
    fake.server.stop(None)
print("ok")
