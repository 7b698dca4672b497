"""Secrets and the data directory: which transports may use a generated secret, the rules a secret must meet,
the local secret file's safety checks, and the data directory's permissions and ``.gitignore``."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import im_task.keys
from im_task import ConfigurationError, configure
from im_task.adapter_settings import AdapterSettings, read_adapter_settings
from im_task.config import get_keyring, get_settings, uses_local_secret
from im_task.datadir import GITIGNORE_TEXT, make_data_dir, make_file_dir, make_private_file
from im_task.keys import MAKE_SECRET, Keyring, coerce_secret, key_id, load_or_create_local_secret
from im_task.stores.local import LocalPayloadStore
from im_task.transports import ImmediateTransport, RecordingTransport, TaskRequest, Transport
from im_task.transports.local import LocalTransport
from im_task.transports.local.store import TaskStore

GOOD_SECRET = "3f9c2b7e1d0a8c4f6b5e2d9a7c1f3e8b-a-configured-secret"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)


# -- the rules a secret must meet ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("changeme-changeme", r"at least 32 bytes long \(this one has 17\)"),
        ("a" * 64, r"too little variety \(only 1 distinct byte values"),
        (b"\x00" * 40, r"too little variety"),
        ("abababababababababababababababab12", r"too little variety"),
        ("changeme-changeme-changeme-changeme", r"mostly repetition \(9 different 4-byte runs in 35 bytes"),
        ("password-password-password-password1", r"mostly repetition"),
        ("0123456789abcdef" * 2, r"mostly repetition \(16 different"),
    ],
)
def test_weak_secrets_are_refused_with_the_command_that_makes_a_good_one(secret: str | bytes, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        configure(secret=secret)
    text = str(refused.value)
    assert text.startswith("configure(): ")
    assert MAKE_SECRET in text
    shown = secret if isinstance(secret, str) else secret.decode("latin-1")
    assert shown not in text  # a refusal never quotes the secret
    assert get_keyring().signing_key != (secret if isinstance(secret, bytes) else secret.encode())  # nothing changed


@pytest.mark.parametrize(
    "secret",
    [secrets.token_hex(32), secrets.token_hex(16), secrets.token_urlsafe(32), os.urandom(32), GOOD_SECRET],
    ids=["token_hex(32)", "token_hex(16)", "token_urlsafe(32)", "urandom(32)", "a long phrase"],
)
def test_random_secrets_of_32_bytes_are_accepted(secret: str | bytes) -> None:
    configure(secret=secret)
    assert get_keyring().signing_key == (secret if isinstance(secret, bytes) else secret.encode())


def test_the_command_in_the_message_makes_an_accepted_secret() -> None:
    made = subprocess.run(
        [sys.executable, "-c", MAKE_SECRET.split('"')[1]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert coerce_secret(made, source="test") == made.encode()


def test_an_environment_value_of_only_commas_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(secret=None)
    monkeypatch.setenv("IM_TASK_SECRET", " , ")
    with pytest.raises(ConfigurationError, match=r"\$IM_TASK_SECRET holds no secret, only commas and spaces"):
        get_keyring()


def test_an_environment_value_split_at_commas_says_how_many_keys_were_read(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    configure(secret=None)
    new, old = secrets.token_hex(32), secrets.token_hex(32)
    monkeypatch.setenv("IM_TASK_SECRET", f"{new},{old}")
    with caplog.at_level(logging.WARNING, logger="im_task"):
        keyring = get_keyring()
    assert keyring.signing_key == new.encode()
    assert len(keyring) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"$IM_TASK_SECRET holds 2 secrets separated by commas: the first signs new tasks, all 2 verify (key "
        f"rotation). A secret cannot contain a comma; if that was one secret, make a new one with: {MAKE_SECRET}"
    ]
    assert new not in warnings[0]
    assert old not in warnings[0]


def test_one_environment_secret_logs_nothing(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    configure(secret=None)
    monkeypatch.setenv("IM_TASK_SECRET", secrets.token_hex(32))
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        assert len(get_keyring()) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_key_id_derivation_is_fixed() -> None:
    # Envelopes in flight carry key ids: changing the derivation would orphan them all.
    assert key_id(b"3f9c2b7e1d0a8c4f6b5e2d9a7c1f3e8b").hex() == "c9844c7a689f777d"


# -- which transports may use a generated development secret -----------------------------------------------------


class _CustomTransport(Transport):
    def enqueue(self, request: object) -> None:  # type: ignore[override]
        raise AssertionError("not used")


@pytest.mark.parametrize(
    "transport",
    [None, "local", "immediate", "recording", "make_local", "make_recording", "make_immediate"],
)
def test_the_local_queue_and_in_process_transports_may_use_a_generated_secret(
    transport: str | None, tmp_path: Path
) -> None:
    made: dict[str, object] = {
        "make_local": LocalTransport(tmp_path / "queue.sqlite3"),
        "make_recording": RecordingTransport(),
        "make_immediate": ImmediateTransport(),
    }
    configure(secret=None, transport=made.get(transport or "", transport))
    try:
        assert uses_local_secret(get_settings())
        assert get_keyring().signing_key == (tmp_path / "secret").read_bytes().strip()
    finally:
        local = made["make_local"]
        assert isinstance(local, LocalTransport)
        local.close()


@pytest.mark.parametrize(
    ("transport", "label"),
    [("cloudtasks", "'cloudtasks'"), ("myapp.queues:make", "'myapp.queues:make'"), ("custom", "_CustomTransport")],
)
def test_any_other_transport_needs_a_configured_secret_in_development(
    transport: str, label: str, tmp_path: Path
) -> None:
    configure(
        secret=None, environment="development", transport=_CustomTransport() if transport == "custom" else transport
    )
    assert not uses_local_secret(get_settings())
    with pytest.raises(ConfigurationError) as refused:
        get_keyring()
    text = str(refused.value)
    assert f"No secret is configured, and the transport {label} does not share this process's data directory" in text
    assert "Set IM_TASK_SECRET (or configure(secret=...)" in text
    assert MAKE_SECRET in text
    assert not (tmp_path / "secret").exists()  # no secret was made
    configure(secret=GOOD_SECRET)
    assert get_keyring().signing_key == GOOD_SECRET.encode()


def test_app_engine_standard_defaults_to_cloud_tasks_so_needs_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAE_ENV", "standard")
    configure(secret=None, environment="development")
    with pytest.raises(ConfigurationError, match=r"the transport 'cloudtasks' does not share"):
        get_keyring()


def test_production_never_uses_a_generated_secret_even_with_the_local_queue(tmp_path: Path) -> None:
    configure(secret=None, environment="production", transport="local")
    with pytest.raises(ConfigurationError, match=r"No secret is configured and this is production.*token_hex\(32\)"):
        get_keyring()
    assert not (tmp_path / "secret").exists()


def test_a_generated_secret_is_announced_once_per_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    configure(secret=None, transport="recording")
    with caplog.at_level(logging.WARNING, logger="im_task"):
        first = get_keyring()
        configure(default_queue="other")  # settings change: the keyring is made again
        assert get_keyring() is not first
        configure(data_dir=tmp_path / "elsewhere")
        get_keyring()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert f"generated development secret, kept in {tmp_path / 'secret'}" in message
    assert "set IM_TASK_SECRET" in message
    assert MAKE_SECRET in message
    assert first.signing_key.decode() not in message


# -- the local secret file ----------------------------------------------------------------------------------------


def test_a_secret_file_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    load_or_create_local_secret(data_dir)
    path = data_dir / "secret"
    path.chmod(0o644)
    with pytest.raises(ConfigurationError) as refused:
        load_or_create_local_secret(data_dir)
    text = str(refused.value)
    assert f"The local secret {path} can be read or written by other users (mode 0644)" in text
    assert f"`chmod 600 {path}`" in text
    assert "delete it to have a new one made" in text
    path.chmod(0o600)  # the fix the message gives works
    assert load_or_create_local_secret(data_dir) == path.read_bytes().strip()


@pytest.mark.parametrize("bits", [0o640, 0o620, 0o604, 0o602, 0o610])
def test_any_group_or_other_permission_on_the_secret_file_is_refused(tmp_path: Path, bits: int) -> None:
    load_or_create_local_secret(tmp_path / "data")
    (tmp_path / "data" / "secret").chmod(bits)
    with pytest.raises(ConfigurationError, match=f"mode {bits:04o}"):
        load_or_create_local_secret(tmp_path / "data")


def test_a_secret_file_that_is_a_symlink_is_refused_and_not_followed(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.write_text(secrets.token_hex(32) + "\n")
    planted.chmod(0o600)
    data_dir = make_data_dir(tmp_path / "data")
    (data_dir / "secret").symlink_to(planted)
    with pytest.raises(ConfigurationError, match=r"is a symbolic link, which im-task does not follow") as refused:
        load_or_create_local_secret(data_dir)
    assert f"rm {data_dir / 'secret'}" in str(refused.value)
    (data_dir / "secret").unlink()
    (data_dir / "secret").symlink_to(tmp_path / "nowhere")  # a dangling link is not replaced either
    with pytest.raises(ConfigurationError, match="symbolic link"):
        load_or_create_local_secret(data_dir)
    assert not (tmp_path / "nowhere").exists()


def test_a_secret_file_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    load_or_create_local_secret(data_dir)
    path = data_dir / "secret"
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)  # root can give the file away for real
        owner = 65534
    else:  # no one else can chown: the secret file's check is made to see another owner
        owner = os.geteuid()
        monkeypatch.setattr(im_task.keys, "owned_by_me", lambda info: False)
    with pytest.raises(ConfigurationError) as refused:
        load_or_create_local_secret(data_dir)
    text = str(refused.value)
    assert f"The local secret {path} belongs to another user (uid {owner})" in text
    assert "delete it to have a new one made" in text


def test_a_secret_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    (data_dir / "secret").mkdir(mode=0o700)
    with pytest.raises(ConfigurationError, match="is not a regular file"):
        load_or_create_local_secret(data_dir)


def test_a_weak_secret_file_is_refused(tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    fd = os.open(data_dir / "secret", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"changeme-changeme-changeme-changeme\n")
    os.close(fd)
    with pytest.raises(ConfigurationError, match=rf"{data_dir / 'secret'}: this secret is mostly repetition"):
        load_or_create_local_secret(data_dir)


# -- the data directory -------------------------------------------------------------------------------------------


def test_the_data_directory_is_made_0700_with_a_gitignore(tmp_path: Path) -> None:
    configure(secret=None, transport="local", data_dir=tmp_path / "project" / ".im_task")
    get_keyring()
    data_dir = tmp_path / "project" / ".im_task"
    assert mode(data_dir) == 0o700
    assert (data_dir / ".gitignore").read_text() == GITIGNORE_TEXT
    assert "*" in (data_dir / ".gitignore").read_text().splitlines()
    assert mode(data_dir / "secret") == 0o600


def test_an_older_data_directory_is_tightened_and_given_a_gitignore(tmp_path: Path) -> None:
    data_dir = tmp_path / ".im_task"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    fd = os.open(data_dir / "secret", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, secrets.token_hex(32).encode())
    os.close(fd)
    queue = data_dir / "queue.sqlite3"
    sqlite3.connect(queue).close()
    queue.chmod(0o644)
    configure(secret=None, transport="local", data_dir=data_dir)
    get_keyring()
    assert mode(data_dir) == 0o700
    assert (data_dir / ".gitignore").read_text() == GITIGNORE_TEXT
    TaskStore(queue).close()
    assert mode(queue) == 0o600


def test_a_gitignore_already_there_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / ".gitignore").write_text("# mine\n*\n")
    make_data_dir(data_dir)
    assert (data_dir / ".gitignore").read_text() == "# mine\n*\n"


def test_a_data_directory_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    configure(secret=None, transport="local", data_dir=tmp_path / "data")
    with pytest.raises(ConfigurationError, match=r"exists and is not a directory: move it away, or set data_dir"):
        get_keyring()


def test_an_unrelated_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    make_file_dir(folder / "queue.sqlite3")
    assert mode(folder) == 0o755
    assert not (folder / ".gitignore").exists()


def test_the_local_queue_and_payload_databases_and_their_companions_are_0600(tmp_path: Path) -> None:
    queue_path = tmp_path / "new-queue-dir" / "queue.sqlite3"
    transport = LocalTransport(queue_path)
    try:
        transport.enqueue(TaskRequest(queue="default", url="/_ah/task/x", body=b"envelope"))
        companions = [queue_path.with_name(queue_path.name + suffix) for suffix in ("-wal", "-shm")]
        assert [path.exists() for path in companions] == [True, True]  # SQLite made them: WAL mode, still open
        assert [mode(path) for path in (queue_path, *companions)] == [0o600] * 3
    finally:
        transport.close()
    store = LocalPayloadStore(tmp_path / "new-payload-dir" / "payloads.sqlite3")
    key = store.put(b"payload" * 1000)
    assert store.get(key) == b"payload" * 1000
    assert mode(store.path) == 0o600
    for directory in (queue_path.parent, store.path.parent):
        assert mode(directory) == 0o700
        assert (directory / ".gitignore").read_text() == GITIGNORE_TEXT
        files = [p for p in directory.iterdir() if p.name != ".gitignore"]
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_the_default_payload_store_adopts_the_configured_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "configured"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    configure(data_dir=data_dir)
    store = LocalPayloadStore()
    store.put(b"x")
    assert mode(data_dir) == 0o700
    assert (data_dir / ".gitignore").exists()
    assert mode(data_dir / "payloads.sqlite3") == 0o600


def test_make_private_file_tightens_an_existing_file_and_keeps_its_content(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"content")
    path.chmod(0o664)
    make_private_file(path)
    assert mode(path) == 0o600
    assert path.read_bytes() == b"content"


def test_git_status_never_offers_the_data_directory(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run([git, "init", "-q", str(project)], check=True, env=env)
    (project / "app.py").write_text("print('hello')\n")
    configure(secret=None, transport="local", data_dir=project / ".im_task")
    get_keyring()
    LocalPayloadStore().put(b"x")
    status = subprocess.run(
        [git, "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert status.splitlines() == ["?? app.py"]
    assert (project / ".im_task" / "secret").exists()


# -- no secret in any repr ----------------------------------------------------------------------------------------


def test_no_secret_in_the_repr_of_settings_adapter_settings_or_the_keyring() -> None:
    old = secrets.token_hex(32)
    configure(secret=[GOOD_SECRET, old])
    read = read_adapter_settings({"SECRET": GOOD_SECRET, "DEFAULT_QUEUE": "mail"}, source="test", spell=str.upper)
    texts = [repr(get_settings()), repr(read), repr(AdapterSettings(core={"secret": old})), repr(get_keyring())]
    for text in texts:
        assert GOOD_SECRET not in text
        assert old not in text
        assert GOOD_SECRET.encode().hex() not in text
    assert "'secret': <hidden>" in texts[1]
    assert "'default_queue': 'mail'" in texts[1]
    assert repr(Keyring([GOOD_SECRET.encode()])) == "<Keyring of 1 key(s)>"


def test_which_transports_share_the_data_directory_is_their_own_declaration() -> None:
    from im_task.transports import CloudTasksTransport, InProcessTransport

    assert LocalTransport.shares_data_directory is True
    assert InProcessTransport.shares_data_directory is True
    assert RecordingTransport.shares_data_directory is True  # a subclass of InProcessTransport
    assert CloudTasksTransport.shares_data_directory is False
    assert Transport.shares_data_directory is False

    class _SameMachine(_CustomTransport):
        shares_data_directory = True

    configure(secret=None, environment="development", transport=_SameMachine())
    assert uses_local_secret(get_settings())


def give_away(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Makes ``path`` another user's: for real as root, else as the data directory module sees it."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
        return 65534
    import im_task.datadir

    owner = os.geteuid()
    monkeypatch.setattr(im_task.datadir, "owned_by_me", lambda info: info.st_ino != path.stat().st_ino)
    return owner


def test_a_data_directory_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chmod(theirs, 0o777)
    owner = give_away(theirs, monkeypatch)
    for data_dir in (theirs, tmp_path / "link"):
        if data_dir.name == "link":
            data_dir.symlink_to(theirs)
        with pytest.raises(ConfigurationError, match=rf"belongs to another user \(uid {owner}\)"):
            make_data_dir(data_dir)
    assert not (theirs / "secret").exists()
    assert not (theirs / ".gitignore").exists()


def test_a_database_planted_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    planted = data_dir / "queue.sqlite3"
    planted.write_bytes(b"")
    os.chmod(planted, 0o666)
    owner = give_away(planted, monkeypatch)
    with pytest.raises(ConfigurationError, match=rf"database .* belongs to another user \(uid {owner}\)"):
        make_private_file(planted)


def test_a_fifo_planted_as_the_secret_is_refused_without_blocking(tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    os.mkfifo(data_dir / "secret", 0o600)
    with pytest.raises(ConfigurationError, match="is not a regular file"):
        load_or_create_local_secret(data_dir)  # opening a FIFO for reading would wait for a writer
