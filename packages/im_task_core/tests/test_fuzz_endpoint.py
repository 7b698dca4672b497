"""Fuzzing the endpoints: no hostile request reaches the unpickler, answers oddly, or leaks or forges in the log.

Genuine envelopes of every version (:func:`im_task_testsupport.fuzzing.make_seeds`)
are bit-flipped, truncated, extended, re-keyed, re-signed with other secrets
and replayed under other paths and queues, with odd methods and task headers
of both families, against ``im_task.executor.handle_request`` and
``im_task.endpoints.handle_request`` (so the deferred endpoints too); each
request is checked against every invariant of
:func:`im_task_testsupport.fuzzing.violations`. The properties here are
deterministic and quick; ``nox -s fuzz`` runs the same cases for minutes,
coverage-guided (``tests/fuzz/endpoint_fuzz.py``).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from im_task_testsupport import fuzzing, sink
from im_task_testsupport.fuzzing import Case, DrawnChoices, Seed, build_case, make_seeds, run_case, violations

from im_task.envelope import BOUND_REFERENCE_VERSION, BOUND_VERSION, REFERENCE_VERSION, VERSION, Binding
from im_task.headers import APPENGINE, CLOUDTASKS, make_task_headers
from im_task.response import TaskResponse
from im_task.testing.plugin import ImTaskSettings

QUICK = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: The smaller properties: a hundred examples each.
SMALL = settings(QUICK, max_examples=100)
MARKERS = fuzzing.secret_markers([fuzzing.FUZZ_SECRET, "test-secret-0123456789abcdefghijklmn"])  # and conftest's


@pytest.fixture
def seeds(im_task_settings: ImTaskSettings) -> list[Seed]:
    im_task_settings(secret=fuzzing.FUZZ_SECRET)
    return make_seeds()


def by_name(seeds: Sequence[Seed], prefix: str) -> Seed:
    return next(seed for seed in seeds if seed.name.startswith(prefix))


def genuine_case(seed: Seed, body: bytes, *, path: str | None = None, queue: str | None = None, **kw: Any) -> Case:
    """The request its queue would send for ``seed``, with ``body`` instead of the seed's own."""
    headers = make_task_headers(queue_name=seed.queue if queue is None else queue, task_name="t-1")
    options: dict[str, Any] = {
        "method": "POST",
        "path": (seed.path or "/_ah/queue/deferred") if path is None else path,
        "body": body,
        "stream": "bytes",
        "headers": headers,
        "remote_addr": "10.0.0.1",
        "endpoint": "all",
        **kw,
    }
    return Case(**options)


def check(case: Case, seeds: Sequence[Seed]) -> fuzzing.Outcome:
    outcome = run_case(case)
    assert violations(case, outcome, seeds, MARKERS) == [], case.note
    return outcome


# --- the seeds are genuine: delivered as their queue would, they run --------------------------------------------


def test_every_genuine_seed_runs_when_its_queue_delivers_it(seeds: list[Seed]) -> None:
    versions = {seed.body[0] for seed in seeds if seed.genuine}
    assert versions == {VERSION, REFERENCE_VERSION, BOUND_VERSION, BOUND_REFERENCE_VERSION}
    for seed in seeds:
        if not seed.genuine or seed.expired:
            continue
        outcome = check(genuine_case(seed, seed.body), seeds)
        assert outcome.unpickled, seed.name
        assert outcome.response is not None
        assert outcome.response.status in (200, 500), seed.name
        assert outcome.response.status == 500 or "unpickled" in outcome.sink, seed.name


# --- every single-bit flip, truncation and extension of every version ---------------------------------------------


@pytest.mark.parametrize("prefix", ["v1 ", "v2 ", "v3 /_ah/task", "v4 ", "v3 /_ah/queue/deferred", "v3 deferred."])
def test_every_bit_flip_truncation_and_extension_is_refused_unread(seeds: list[Seed], prefix: str) -> None:
    seed = by_name(seeds, prefix)
    bodies = [seed.body[:size] for size in range(len(seed.body))]
    bodies += [seed.body + tail for tail in (b"\x00", b"\n", b"\xff" * 64, seed.body)]
    for bit in range(len(seed.body) * 8):
        flipped = bytearray(seed.body)
        flipped[bit // 8] ^= 1 << (bit % 8)
        bodies.append(bytes(flipped))
    for body in bodies:
        outcome = run_case(genuine_case(seed, body))
        assert outcome.response is not None
        assert (outcome.response.status, outcome.unpickled) == (403, False), (seed.name, body.hex())
        assert all(r.levelno == logging.WARNING and not r.exc_info for r in outcome.records)
    assert sink.calls == []


# --- replays under other paths, queues and header families ----------------------------------------------------


@pytest.mark.parametrize("family", [APPENGINE, CLOUDTASKS])
def test_replays_under_other_paths_and_queues_are_refused(seeds: list[Seed], family: str) -> None:
    paths = ["/_ah/task/anything/at/all", "/_ah/task", "/_ah/queue/deferred", "/_ah/queue/mail", "/_ah/task/x/mail"]
    for seed in seeds:
        if seed.path is None:  # unbound: runs anywhere while accept_unbound_envelopes is on (checked below)
            continue
        others = [path for path in paths if path != seed.path] if seed.path else ["/_ah/task/x", "/_ah/task/y/z"]
        for path in others:
            check(genuine_case(seed, seed.body, path=path), seeds)
        if seed.path:
            for queue in ("other", f"{seed.queue}-2", "", seed.queue.upper()):
                headers = make_task_headers(queue_name=queue or "q", task_name="t", family=family)
                outcome = check(genuine_case(seed, seed.body, queue=queue, headers=headers), seeds)
                assert outcome.response is not None
                assert outcome.response.status == 403
    assert "unpickled" not in sink.calls


def test_unbound_envelopes_are_refused_everywhere_once_accept_unbound_envelopes_is_off(seeds: list[Seed]) -> None:
    for seed in (by_name(seeds, "v1 "), by_name(seeds, "v2 ")):
        for path in ("/_ah/task/anything", "/_ah/queue/deferred"):
            outcome = check(genuine_case(seed, seed.body, path=path, accept_unbound=False), seeds)
            assert outcome.response is not None
            assert (outcome.response.status, outcome.unpickled) == (403, False)


# --- hypothesis: every kind of hostile request ----------------------------------------------------------------


def test_hostile_requests_of_every_kind_keep_every_invariant(seeds: list[Seed]) -> None:
    seen: set[int] = set()

    @QUICK
    @given(st.data())
    def hostile(data: st.DataObject) -> None:
        case, _ = build_case(DrawnChoices(data), seeds)
        outcome = run_case(case)
        assert outcome.response is not None, outcome.escaped
        seen.add(outcome.response.status)
        assert violations(case, outcome, seeds, MARKERS) == [], case.note

    hostile()
    assert {403, 405} <= seen  # the examples reached more than the first refusal


@SMALL
@given(body=st.binary(max_size=4096), endpoint=st.sampled_from(["task", "all"]))
def test_random_bodies_are_refused_unread(body: bytes, endpoint: str) -> None:
    seed = Seed("random", body, genuine=False, path="/_ah/queue/deferred", queue="default")
    case = genuine_case(seed, body, endpoint=endpoint)
    outcome = run_case(case)
    assert outcome.response is not None
    assert (outcome.response.status, outcome.unpickled) == (403, False)
    assert violations(case, outcome, [], MARKERS) == []


def test_a_pickle_body_never_reaches_the_unpickler_at_any_endpoint() -> None:
    body = pickle.dumps(sink.Tripwire())
    for path in ("/_ah/task/app/work", "/_ah/queue/deferred", "/_ah/queue/default"):
        seed = Seed("pickle", body, genuine=False, path=path, queue="default")
        for remote_addr in ("0.1.0.2", None):
            case = genuine_case(seed, body, remote_addr=remote_addr)
            outcome = run_case(case)
            assert outcome.response is not None
            assert (outcome.response.status, outcome.unpickled) == (403, False)
    assert sink.calls == []


@SMALL
@given(
    family=st.sampled_from([APPENGINE, CLOUDTASKS]),
    queue=st.text(min_size=1, max_size=30),
    name=st.text(min_size=1, max_size=30),
    count=st.text(max_size=12),
    path=st.text(max_size=40),
)
def test_odd_task_headers_and_paths_never_forge_a_log_line(
    family: str, queue: str, name: str, count: str, path: str
) -> None:
    headers = {
        **make_task_headers(queue_name=queue, task_name=name, family=family),
        family + "TaskRetryCount": count,
    }
    case = Case("POST", "/_ah/task/" + path, b"\x03" + b"\x00" * 60, "bytes", headers, "10.0.0.1", "task")
    outcome = run_case(case)
    assert outcome.response is not None
    assert outcome.response.status == 403
    assert outcome.records, "a refusal is logged"
    assert violations(case, outcome, [], MARKERS) == []


# --- the invariants can fail -------------------------------------------------------------------------------------


def test_the_invariants_catch_an_endpoint_that_runs_replays(seeds: list[Seed], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Binding, "refusal", lambda self, **kwargs: None)
    seed = by_name(seeds, "v3 /_ah/task")
    case = genuine_case(seed, seed.body, path="/_ah/task/anything/at/all")
    assert "unpickled without a valid signature for this path, queue and time" in violations(
        case, run_case(case), seeds, MARKERS
    )


def test_the_invariants_catch_a_forged_log_line_a_leaked_secret_and_an_error_of_ours(seeds: list[Seed]) -> None:
    case = genuine_case(by_name(seeds, "v3 signed"), b"forged", path="/_ah/task/a\nCRITICAL forged")
    outcome = run_case(case)
    assert violations(case, outcome, seeds, MARKERS) == []
    forged = logging.LogRecord("im_task", logging.ERROR, __file__, 1, "Refused %s", (case.path,), None)
    leaked = logging.LogRecord("im_task", logging.WARNING, __file__, 1, "key %s", (fuzzing.FUZZ_SECRET,), None)
    outcome.records += [forged, leaked]
    found = violations(case, outcome, seeds, MARKERS)
    assert any("raw CR/LF" in v for v in found)
    assert any("logged at ERROR" in v for v in found)
    assert any("a secret in a log record" in v for v in found)
    assert outcome.response is not None
    outcome.response = TaskResponse(500, b"Traceback (most recent call last):\n")
    found = violations(case, outcome, seeds, MARKERS)
    assert any("500 from im-task's own code" in v for v in found)
    assert any("a traceback in the response" in v for v in found)
