"""Runs the README's example for each framework, from installed wheels, against a real server on 127.0.0.1.

``nox -s dist`` runs this script with the Python of a fresh virtual environment
that holds only the built wheels (and what they depend on), from an empty
working directory outside the repository::

    python readme_examples.py /path/to/README.md [flask] [django] [webapp2]

For each framework it takes the README's code block as written (a block is
split into files at its ``# path/to/file.py`` comment lines), lays it out as
a user would (Django: ``django-admin startproject`` and ``manage.py
startapp`` first), serves it with the framework's own server (``flask run``,
``manage.py runserver``; ``wsgiref`` for webapp2) on 127.0.0.1, calls the
sign-up URL over HTTP, and waits until ``im-task queue stats`` shows the task
done. It also runs ``im-task --help`` and ``python -m im_task --version``.
It uses the standard library only, so nothing but the wheels is needed.
Exits with status 0 when everything worked, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The frameworks whose examples the README shows, by the bold heading before each code block.
FRAMEWORKS = ("flask", "django", "webapp2")
HEADING = re.compile(r"^\*\*(?P<name>Flask|Django|webapp2)\*\*", re.MULTILINE)
BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.DOTALL)
FILE_LINE = re.compile(r"^# (?P<path>[\w./-]+\.py)\b.*$", re.MULTILINE)
STATS = re.compile(
    r"queued (?P<queued>\d+) \(due now (?P<due>\d+)\), "
    r"running (?P<running>\d+), done (?P<done>\d+), failed (?P<failed>\d+)"
)
#: Seconds to wait for a server to listen, and for a task to be done.
START_TIMEOUT = 60.0
TASK_TIMEOUT = 60.0


class CheckFailed(Exception):
    """What went wrong, said so that the reader knows where to look."""


def readme_examples(readme: str) -> dict[str, dict[str, str]]:
    """The README's example files for each framework.

    Args:
        readme: The text of README.md.

    Returns:
        Framework name (lower case) -> {relative file path: source}.

    Raises:
        CheckFailed: A framework has no example, or its block names no file.
    """
    examples: dict[str, dict[str, str]] = {}
    for heading in HEADING.finditer(readme):
        block = BLOCK.search(readme, heading.end())
        if block is None:
            raise CheckFailed(f"README.md: no ```python block after **{heading['name']}**")
        code = block["code"]
        starts = list(FILE_LINE.finditer(code))
        if not starts or code[: starts[0].start()].strip():
            raise CheckFailed(f"README.md: the {heading['name']} example must start with a '# path/to/file.py' line")
        files: dict[str, str] = {}
        for index, start in enumerate(starts):
            end = starts[index + 1].start() if index + 1 < len(starts) else len(code)
            files[start["path"]] = code[start.end() : end].strip("\n") + "\n"
        examples[heading["name"].lower()] = files
    missing = [name for name in FRAMEWORKS if name not in examples]
    if missing:
        raise CheckFailed(f"README.md has no example for {', '.join(missing)} (a **Flask**-style heading and a block)")
    return examples


def bin_path(name: str) -> str:
    """A console script of this virtual environment."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise CheckFailed(f"{path} is missing: the wheel that provides {name!r} did not install it")
    return str(path)


def run(args: list[str], cwd: Path, *, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion and fails, with its output, when it exits non-zero."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise CheckFailed(
            f"{' '.join(args)} exited with status {result.returncode}\n--- stdout ---\n{result.stdout}"
            f"\n--- stderr ---\n{result.stderr}"
        )
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process started by :func:`serving`."""

    url: str
    log: Path

    def output(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def serving(args: list[str], cwd: Path, port: int) -> Iterator[Server]:
    """Starts a server process, waits until it listens on ``port``, and stops it on exit, even on failure."""
    log = cwd / "server.log"
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise CheckFailed(f"{' '.join(args)} exited with status {process.returncode}:\n{server.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise CheckFailed(f"{' '.join(args)} did not listen on port {port} in {START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        yield server
    except CheckFailed as exc:
        raise CheckFailed(f"{exc}\n--- server output ---\n{server.output()}") from None
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def request(url: str, method: str) -> tuple[int, str]:
    """The status and body of one HTTP request."""
    call = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def queue_stats(cwd: Path) -> dict[str, int]:
    """The local queue's counts, from ``im-task queue stats`` run where the app keeps its queue."""
    output = run([bin_path("im-task"), "queue", "stats"], cwd).stdout
    match = STATS.search(output)
    if match is None:
        raise CheckFailed(f"im-task queue stats printed no counts: {output!r}")
    return {name: int(value) for name, value in match.groupdict().items()}


def wait_until_done(cwd: Path, count: int) -> dict[str, int]:
    """Waits until ``count`` tasks are done and none is left, and fails on a failed task or at the timeout."""
    deadline = time.monotonic() + TASK_TIMEOUT
    while True:
        stats = queue_stats(cwd)
        if stats["failed"]:
            raise CheckFailed(f"a task failed: {stats}")
        if stats["done"] >= count and not stats["queued"] and not stats["running"]:
            return stats
        if time.monotonic() > deadline:
            raise CheckFailed(f"the task was not done in {TASK_TIMEOUT:.0f} s: {stats}")
        time.sleep(0.25)


def write(files: dict[str, str], cwd: Path) -> None:
    """Writes the example's files under ``cwd``."""
    for relative, source in files.items():
        path = cwd / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")


def expect(status: int, body: str, wanted: int, what: str) -> None:
    if status != wanted:
        raise CheckFailed(f"{what} answered {status}, not {wanted}: {body[:500]!r}")


def check_flask(files: dict[str, str], cwd: Path) -> str:
    write(files, cwd)
    port = free_port()
    module = Path(next(iter(files))).stem
    command = [bin_path("flask"), "--app", module, "run", "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, cwd, port) as server:
        status, body = request(f"{server.url}/signup/1", "POST")
        expect(status, body, 200, "POST /signup/1")
        before = queue_stats(cwd)
        if (before["queued"], before["due"], before["done"]) != (1, 0, 0):
            raise CheckFailed(f"right after the call the task should be queued and not yet due: {before}")
        stats = wait_until_done(cwd, 1)
    return f"POST /signup/1 -> {status} {body!r}; queued, not due (countdown), then {stats}"


def check_django(files: dict[str, str], cwd: Path) -> str:
    project = next(Path(path).parts[0] for path in files if Path(path).name == "settings.py")
    apps = {Path(path).parts[0] for path in files if Path(path).parts[0] != project}
    run([bin_path("django-admin"), "startproject", project, "."], cwd)
    for app in sorted(apps):
        run([sys.executable, "manage.py", "startapp", app], cwd)
    for relative, source in files.items():
        path = cwd / relative
        if path.name == "settings.py":  # the README adds to the settings startproject wrote
            path.write_text(path.read_text(encoding="utf-8") + "\n" + source, encoding="utf-8")
        else:
            path.write_text(source, encoding="utf-8")
    run([sys.executable, "manage.py", "check", "--fail-level", "WARNING"], cwd)
    run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd)
    port = free_port()
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with serving(command, cwd, port) as server:
        status, body = request(f"{server.url}/signup/1", "GET")
        expect(status, body, 200, "GET /signup/1")
        stats = wait_until_done(cwd, 1)
    return f"GET /signup/1 -> {status} {body!r}; then {stats}"


def check_webapp2(files: dict[str, str], cwd: Path) -> str:
    write(files, cwd)
    port = free_port()
    module = Path(next(iter(files))).stem
    serve = (
        "import sys; from wsgiref.simple_server import make_server; "
        f"import {module}; make_server('127.0.0.1', int(sys.argv[1]), {module}.app).serve_forever()"
    )
    # -W error: importing the README's app (im_task_webapp2 first, then webapp2) must not warn.
    with serving([sys.executable, "-W", "error", "-c", serve, str(port)], cwd, port) as server:
        status, body = request(f"{server.url}/signup/1", "POST")
        expect(status, body, 200, "POST /signup/1")
        stats = wait_until_done(cwd, 1)
    return f"POST /signup/1 -> {status}; then {stats}"


CHECKS = {"flask": check_flask, "django": check_django, "webapp2": check_webapp2}


def check_commands(cwd: Path) -> str:
    """``im-task --help`` and ``python -m im_task --version`` work from the installed wheel."""
    from importlib.metadata import version

    import im_task

    site = Path(im_task.__file__).resolve()
    if Path(sys.prefix).resolve() not in site.parents:
        raise CheckFailed(f"im_task was imported from {site}, not from this environment ({sys.prefix})")
    help_text = run([bin_path("im-task"), "--help"], cwd).stdout
    if not help_text.startswith("usage: im-task"):
        raise CheckFailed(f"im-task --help printed {help_text[:200]!r}")
    printed = run([sys.executable, "-m", "im_task", "--version"], cwd).stdout.strip()
    wanted = f"im-task {version('im-task')}"
    if printed != wanted or im_task.__version__ != version("im-task"):
        raise CheckFailed(f"python -m im_task --version printed {printed!r}; wanted {wanted!r}")
    return f"im-task --help ok; python -m im_task --version: {printed}"


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_file():
        print("usage: python readme_examples.py README.md [flask] [django] [webapp2]", file=sys.stderr)
        return 2
    wanted = argv[1:] or list(FRAMEWORKS)
    unknown = sorted(set(wanted) - set(FRAMEWORKS))
    if unknown:
        print(f"unknown framework(s) {unknown}: choose from {list(FRAMEWORKS)}", file=sys.stderr)
        return 2
    os.environ.pop("PYTHONPATH", None)
    for name in [name for name in os.environ if name.startswith("IM_TASK_")] + ["GAE_ENV", "K_SERVICE"]:
        os.environ.pop(name, None)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="im-task-readme-") as tmp:
        root = Path(tmp)
        try:
            print(f"commands: {check_commands(root)}")
            examples = readme_examples(Path(argv[0]).read_text(encoding="utf-8"))
        except CheckFailed as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        for name in wanted:
            cwd = root / name
            cwd.mkdir()
            started = time.monotonic()
            try:
                outcome = CHECKS[name](examples[name], cwd)
            except (CheckFailed, subprocess.TimeoutExpired) as exc:
                failures += 1
                print(f"FAILED: the README's {name} example: {exc}", file=sys.stderr)
            else:
                print(f"{name}: the README's example works ({time.monotonic() - started:.1f} s): {outcome}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
