"""Issue 6: client-side OpenPGP encryption that PostgreSQL's pgcrypto reads and writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from queuer import DecryptionError, JobStatus
from queuer.database.encryption import PgpCodec

from .helpers import QueuerFactory, has_pgcrypto

KEY = "correct horse battery staple"


@pytest.fixture
def pgcrypto(sql: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    if not has_pgcrypto(sql):
        pytest.skip("this PostgreSQL has no pgcrypto (the embedded server ships without it)")
    sql.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
    return sql


@pytest.fixture
def sent_sql(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every query text and parameter psycopg sends, as text (the server sees exactly these)."""
    seen: list[str] = []

    def record(query: Any, params: Any) -> None:
        seen.append(query if isinstance(query, str) else repr(query))
        seen.extend(repr(p) for p in (params.values() if isinstance(params, dict) else params or ()))

    for cls in (psycopg.Cursor, psycopg.AsyncCursor):
        original = cls.execute

        def wrapped(
            self: Any, query: Any, params: Any = None, *a: Any, __orig: Any = original, **k: Any
        ) -> Any:
            record(query, params)
            return __orig(self, query, params, *a, **k)

        monkeypatch.setattr(cls, "execute", wrapped)
    yield seen


def test_codec_round_trip_and_packet_profile() -> None:
    codec = PgpCodec(KEY)
    message = codec.encrypt('["héllo", 1]')
    assert codec.decrypt(message) == '["héllo", 1]'
    # SKESK v4, AES-128, iterated+salted S2K with SHA-1, then SEIPD v1 (with MDC): pgcrypto's profile.
    assert message[0] == 0xC3 and message[2:6] == bytes((4, 7, 3, 2))
    skesk_len = message[1]
    assert message[2 + skesk_len] == 0xC0 | 18
    assert codec.encrypt("x") != codec.encrypt("x")  # random salt and prefix
    with pytest.raises(DecryptionError, match="wrong key"):
        PgpCodec("another key").decrypt(message)
    with pytest.raises(DecryptionError):
        codec.decrypt(b"not a message at all")
    assert "battery" not in repr(codec)


def test_python_ciphertext_decrypts_with_sql_and_back(pgcrypto: psycopg.Connection[Any]) -> None:
    codec = PgpCodec(KEY)
    text = '{"a": [1, 2.5, "ü"], "b": null}' * 500  # long enough for partial-length packets
    row = pgcrypto.execute("SELECT pgp_sym_decrypt(%s::bytea, %s)", (codec.encrypt(text), KEY)).fetchone()
    assert row is not None and row[0] == text
    for options in (
        "",
        "cipher-algo=aes256, s2k-digest-algo=sha256",
        "compress-algo=2",
        "compress-algo=1, sess-key=1",
    ):
        row = pgcrypto.execute("SELECT pgp_sym_encrypt(%s, %s, %s)", (text, KEY, options)).fetchone()
        assert row is not None and codec.decrypt(row[0]) == text, options
    with pytest.raises(psycopg.errors.ExternalRoutineInvocationException, match="Wrong key"):
        pgcrypto.execute("SELECT pgp_sym_decrypt(%s::bytea, 'wrong')", (codec.encrypt(text),))


def test_results_are_encrypted_and_readable_by_sql(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], sent_sql: list[str]
) -> None:
    q = make_queuer("secret", 2, encryption_key=KEY)

    @q.task()
    def compute(x: int) -> dict[str, int]:
        return {"square": x * x}

    q.start()
    done = q.wait_for_job_finished(q.add_job(compute, 12).rid, 10)
    assert done.status is JobStatus.SUCCEEDED and done.results == [{"square": 144}]
    row = sql.execute(
        "SELECT results::text, results_encrypted FROM job_archive WHERE rid = %s", (done.rid,)
    ).fetchone()
    assert row is not None and row[0] == "[]" and len(row[1]) > 0
    assert PgpCodec(KEY).decrypt(row[1]) == '[{"square":144}]'
    q.stop()
    assert len(sent_sql) > 10 and not any(KEY in s for s in sent_sql)  # the key never reaches the server
    if has_pgcrypto(sql):
        sql.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        plain = sql.execute(
            "SELECT pgp_sym_decrypt(results_encrypted, %s)::jsonb FROM job_archive WHERE rid = %s",
            (KEY, done.rid),
        ).fetchone()
        assert plain is not None and plain[0] == [{"square": 144}]


def test_parameters_encrypted_when_asked(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    q = make_queuer("sealed", 1, encryption_key=KEY, encrypt_parameters=True)

    @q.task()
    def greet(name: str, punctuation: str = ".") -> str:
        return f"hello {name}{punctuation}"

    job = q.add_job(greet, "ada", punctuation="!")
    assert job.parameters == ["ada"] and job.parameters_keyed == {"punctuation": "!"}
    row = sql.execute(
        "SELECT parameters::text, parameters_keyed::text, parameters_encrypted, parameters_keyed_encrypted, "
        "task_name, status FROM job"
    ).fetchone()
    assert (
        row is not None and row[:2] == ("[]", "{}") and row[2] and row[3] and row[4:] == ("greet", "QUEUED")
    )
    q.start()
    assert q.wait_for_job_finished(job.rid, 10).results == ["hello ada!"]


def test_no_key_means_plaintext_and_a_wrong_key_is_a_clear_error(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    writer = make_queuer("writer", 1, encryption_key=KEY)

    @writer.task()
    def value() -> int:
        return 42

    writer.start()
    encrypted = writer.wait_for_job_finished(writer.add_job(value).rid, 10)
    plain_q = make_queuer("plain", 1)
    plain_q.add_task(value)
    plain_q.start()
    writer.stop()
    plain = plain_q.wait_for_job_finished(plain_q.add_job(value).rid, 10)
    row = sql.execute(
        "SELECT results::text, results_encrypted FROM job_archive WHERE rid = %s", (plain.rid,)
    ).fetchone()
    assert row is not None and row[0] == "[42]" and bytes(row[1]) == b""
    with pytest.raises(DecryptionError, match="no key"):
        plain_q.get_job_ended(encrypted.rid)
    wrong = make_queuer("wrong", 1, encryption_key="not the key")
    with pytest.raises(DecryptionError, match="wrong key"):
        wrong.get_job_ended(encrypted.rid)
    rotated = make_queuer("rotated", 1, encryption_key="new key", old_encryption_keys=[KEY])
    assert rotated.get_job_ended(encrypted.rid).results == [42]
