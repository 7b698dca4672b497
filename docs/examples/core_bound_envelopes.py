"""Bound envelopes: a captured task runs under its own URL and queue only, until it expires, with its own headers."""

import time

from im_task import configure, task
from im_task.config import get_keyring
from im_task.endpoints import handle_request
from im_task.envelope import Binding, seal, unseal
from im_task.headers import make_task_headers
from im_task.serialization import TaskCall, dumps_call
from im_task.transports import RecordingTransport

recorder = RecordingTransport()
configure(secret="an example secret: Zq8#vR2!mK5@wP9$xL3^nB7&cT4*hJ6%", transport=recorder)
transfers: list[tuple[int, str, str | None]] = []


# [start bound]
@task(includeheaders=True, headers={"X-Tenant": "acme"})
def transfer(amount: int, to: str, *, headers: dict[str, str]) -> None:
    transfers.append((amount, to, headers.get("X-Tenant")))


transfer(100, "alice")
[request] = recorder.requests  # what the queue holds: a URL, a queue, and a signed envelope
binding = unseal(request.body, get_keyring()).binding
assert binding is not None
assert (binding.path, binding.queue) == ("/_ah/task/__main__/transfer", "default")
assert dict(binding.headers) == {"X-Tenant": "acme"}


def deliver(path: str, queue: str = "default", **extra: str) -> int:
    """POSTs the captured envelope as a queue would (or as someone replaying it would)."""
    headers = {**make_task_headers(queue_name=queue, task_name="t-1"), **extra}
    return handle_request("POST", path, request.body, headers, "203.0.113.7").status


assert deliver("/_ah/task/anything/at/all") == 403  # another path: refused, nothing unpickled
assert deliver(request.url, queue="other") == 403  # another queue: refused
assert deliver(request.url, **{"X-Tenant": "evil"}) == 200  # its own path and queue: it runs...
assert transfers == [(100, "alice", "acme")]  # ...and sees the headers signed at enqueue, not the caller's
# [end bound]

# [start expiry]
# Past envelope_lifetime after its schedule time (31 days by default), an envelope is refused.
old = Binding.for_task(path="/_ah/task/app/work", queue="default", headers={}, lifetime=3600, now=time.time() - 7200)
expired = seal(dumps_call(TaskCall(print, ("too late",))), get_keyring(), old)
headers = make_task_headers(queue_name="default", task_name="t-2")
assert handle_request("POST", "/_ah/task/app/work", expired, headers, None).status == 403
# [end expiry]
print("bound envelopes: replays elsewhere refused, expired envelopes refused, signed headers seen")
