"""The signed envelope, the keyring, key rotation and the local development secret."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from im_task_testsupport.threads import run_in_threads

from im_task import ConfigurationError, SignatureError, configure
from im_task.config import get_keyring
from im_task.envelope import VERSION, open_envelope, seal
from im_task.keys import KEY_ID_SIZE, Keyring, coerce_secret, key_id, load_or_create_local_secret

KEY_A = b"key-a-3f9c2b7e1d0a8c4f6b5e2d9a7c1f3e8b"
KEY_B = b"key-b-8d2e4a6c0f1b3d5e7a9c2b4d6f8e0a1c"
PAYLOAD = b"the serialised call \x00\x01\x02"
HEADER = 1 + KEY_ID_SIZE + 32


def test_seal_and_open() -> None:
    keyring = Keyring([KEY_A])
    body = seal(PAYLOAD, keyring)
    assert body[0] == VERSION
    assert body[1 : 1 + KEY_ID_SIZE] == key_id(KEY_A)
    assert body.endswith(PAYLOAD)
    assert len(body) == HEADER + len(PAYLOAD)
    assert open_envelope(body, keyring) == PAYLOAD


def test_empty_payload() -> None:
    keyring = Keyring([KEY_A])
    assert open_envelope(seal(b"", keyring), keyring) == b""


def test_a_flipped_bit_anywhere_fails() -> None:
    keyring = Keyring([KEY_A])
    body = seal(PAYLOAD, keyring)
    for index in range(len(body)):
        for bit in (0x01, 0x80):
            forged = bytearray(body)
            forged[index] ^= bit
            with pytest.raises(SignatureError):
                open_envelope(bytes(forged), keyring)


def test_truncated_or_extended_body_fails() -> None:
    keyring = Keyring([KEY_A])
    body = seal(PAYLOAD, keyring)
    with pytest.raises(SignatureError, match="does not verify"):
        open_envelope(body[:-1], keyring)
    with pytest.raises(SignatureError, match="does not verify"):
        open_envelope(body + b"x", keyring)


def test_another_secret_fails() -> None:
    body = seal(PAYLOAD, Keyring([KEY_B]))
    with pytest.raises(SignatureError, match="does not verify under any configured secret"):
        open_envelope(body, Keyring([KEY_A]))


def test_a_mac_of_another_key_under_the_right_key_id_fails() -> None:
    forged = seal(PAYLOAD, Keyring([KEY_B]))
    forged = forged[:1] + key_id(KEY_A) + forged[1 + KEY_ID_SIZE :]
    with pytest.raises(SignatureError):
        open_envelope(forged, Keyring([KEY_A]))


def test_random_bytes_fail() -> None:
    keyring = Keyring([KEY_A])
    for size in (0, 1, HEADER - 1, HEADER, HEADER + 1, 1000):
        with pytest.raises(SignatureError):
            open_envelope(secrets.token_bytes(size), keyring)
        with pytest.raises(SignatureError):
            open_envelope(bytes([VERSION]) + secrets.token_bytes(size), keyring)


def test_too_short() -> None:
    with pytest.raises(SignatureError, match="too short"):
        open_envelope(b"\x01" + b"\x00" * (HEADER - 2), Keyring([KEY_A]))


def test_unknown_version() -> None:
    keyring = Keyring([KEY_A])
    body = bytearray(seal(PAYLOAD, keyring))
    for unknown in (0, 5, 255):
        body[0] = unknown
        with pytest.raises(SignatureError, match=f"Unknown envelope version {unknown}"):
            open_envelope(bytes(body), keyring)


def test_signature_error_is_a_library_error() -> None:
    from im_task import Error

    assert issubclass(SignatureError, Error)


def test_key_rotation_new_key_signs_old_key_still_verifies() -> None:
    configure(secret=KEY_A)
    old_body = seal(PAYLOAD, get_keyring())
    configure(secret=[KEY_B, KEY_A])
    rotated = get_keyring()
    assert len(rotated) == 2
    assert open_envelope(old_body, rotated) == PAYLOAD
    new_body = seal(PAYLOAD, rotated)
    assert new_body[1 : 1 + KEY_ID_SIZE] == key_id(KEY_B)
    assert open_envelope(new_body, Keyring([KEY_B])) == PAYLOAD
    with pytest.raises(SignatureError):
        open_envelope(new_body, Keyring([KEY_A]))
    configure(secret=KEY_B)  # the old key retired
    with pytest.raises(SignatureError):
        open_envelope(old_body, get_keyring())


def test_key_ids_do_not_reveal_keys_and_differ() -> None:
    assert key_id(KEY_A) != key_id(KEY_B)
    assert len(key_id(KEY_A)) == KEY_ID_SIZE
    assert KEY_A[:KEY_ID_SIZE] != key_id(KEY_A)
    assert KEY_A[:8].decode() not in repr(Keyring([KEY_A]))


def test_empty_keyring_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least one secret"):
        Keyring([])


@pytest.mark.parametrize("secret", ["", "short", "0123456789abcdefghijklmnopqrstu", b"0123456789abcdefghijklmnopqrstu"])
def test_secrets_under_32_bytes_are_refused(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match=r"at least 32 bytes.*secrets\.token_hex"):
        configure(secret=secret)
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        configure(secret=["a-long-enough-secret-0123456789abcdef", secret])


def test_secret_of_32_bytes_and_unicode_secrets_are_accepted() -> None:
    assert coerce_secret("0123456789abcdefghijklmnopqrstuv", source="test") == b"0123456789abcdefghijklmnopqrstuv"
    unicode = "éàüöçñøåßêîôûëïÿ"  # 16 characters, 32 bytes in UTF-8
    assert coerce_secret(unicode, source="test") == unicode.encode()


def test_secret_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="secret must be a str, bytes"):
        configure(secret=1234567890123456789)
    with pytest.raises(ConfigurationError, match="a secret is a str or bytes, not int"):
        configure(secret=[12345678901234567890])
    with pytest.raises(ConfigurationError, match="non-empty list"):
        configure(secret=[])


def test_environment_secret_takes_several_separated_by_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(secret=None)
    monkeypatch.setenv("IM_TASK_SECRET", f" {KEY_B.decode()} , {KEY_A.decode()},")
    keyring = get_keyring()
    assert len(keyring) == 2
    assert keyring.signing_key == KEY_B
    assert open_envelope(seal(PAYLOAD, Keyring([KEY_A])), keyring) == PAYLOAD


def test_environment_secret_too_short_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(secret=None)
    monkeypatch.setenv("IM_TASK_SECRET", f"{KEY_A.decode()},short")
    with pytest.raises(ConfigurationError, match=r"\$IM_TASK_SECRET: a secret must be at least 32 bytes"):
        get_keyring()


def test_local_secret_is_made_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_or_create_local_secret(data_dir)
    path = data_dir / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert load_or_create_local_secret(data_dir) == first
    assert sorted(p.name for p in data_dir.iterdir()) == [".gitignore", "secret"]  # no temporary files left


def test_development_keyring_uses_the_local_secret(tmp_path: Path) -> None:
    configure(secret=None, data_dir=tmp_path / "dev")
    keyring = get_keyring()
    assert keyring.signing_key == (tmp_path / "dev" / "secret").read_text().strip().encode()
    configure(data_dir=tmp_path / "dev")  # settings change, same secret file
    assert get_keyring().signing_key == keyring.signing_key


def test_local_secret_threads_agree(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    results: list[bytes] = []
    assert run_in_threads(lambda: results.append(load_or_create_local_secret(data_dir)), timeout=30) == []
    assert len(results) == 8
    assert len(set(results)) == 1
    assert sorted(p.name for p in data_dir.iterdir()) == [".gitignore", "secret"]


def test_local_secret_processes_agree(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    code = (
        "import sys; from pathlib import Path; from im_task.keys import load_or_create_local_secret\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "print(load_or_create_local_secret(Path(sys.argv[1])).decode())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IM_TASK_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for proc in procs:  # every process imported im_task and waits: release them together
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    outputs = [proc.communicate("go\n", timeout=60)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    assert len(set(outputs)) == 1
    assert outputs[0] == (data_dir / "secret").read_text().strip()
    assert sorted(p.name for p in data_dir.iterdir()) == [".gitignore", "secret"]
