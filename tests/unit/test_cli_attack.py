"""Bad input to the CLI and its settings, found by trying to break them: each gets one line on
stderr and a non-zero exit (never a traceback, never a silent default), before anything is sent.
No broker: the Kafka steps are stubbed the way the real clients answer."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

import streams.cli.common as common
import streams.cli.data as data
import streams.cli.deletions as deletions
import streams.cli.ops as ops
import streams.cli.report as report
import streams.kafka.io as kafka_io
from schemas.topics import TOPICS
from streams.cli.main import run
from streams.config.settings import ConfigError, Settings

ALL_TOPICS = [spec.name for spec in TOPICS]


def never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("reached Kafka: the error should have come first")


class FakeAdmin:
    """kafka-python's admin client, as far as listing topics goes."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def list_topics(self) -> list[str]:
        return self.topics

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    for name in ("TOPIC_PREFIX", "API_TOKENS_FILE", "API_READ_TOKENS", "API_ADMIN_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    for module in (data, deletions, report):
        monkeypatch.setattr(module, "require_broker", lambda settings, timeout_s: None)
    monkeypatch.setattr(ops, "ensure_topics", never)
    monkeypatch.setattr(deletions, "send_and_wait", never)
    monkeypatch.setattr(kafka_io, "produce_records", never)
    monkeypatch.setattr(kafka_io, "current_counts", never)


def brokers_topics(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    monkeypatch.setattr(common, "admin_client", lambda settings, timeout_s=15.0: FakeAdmin(names))


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def dataset(tmp_path: Any) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text('{"tenant_id": "a", "cycle_start": "2026-01-01", "window_months": 1}\n')
    return str(path)


# -- topics that do not exist, and the Kafka client's own refusals ----------------------------


def test_produce_to_topics_never_created_is_one_line_at_once(tmp_path, monkeypatch, capsys):
    """The brokers create no topic on demand: the client waited a minute for its metadata,
    then the command died with a KafkaTimeoutError traceback (a fresh or mistyped prefix)."""
    brokers_topics(monkeypatch, [])
    monkeypatch.setenv("TOPIC_PREFIX", "typo-")

    def waits_for_metadata(*args: Any, **kwargs: Any) -> int:
        raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    monkeypatch.setattr(kafka_io, "produce_records", waits_for_metadata)
    assert run(["produce", dataset(tmp_path)]) == 1
    one_line_error(capsys, "no topic typo-launches", "active-learners topics")


def test_delete_against_topics_never_created_is_one_line_and_sends_nothing(monkeypatch, capsys):
    brokers_topics(monkeypatch, ["launches"])
    argv = ["delete", "--tenant", "a", "--older-than", "2d", "--preview"]
    assert run(argv) == 1  # send_and_wait fails the test
    one_line_error(capsys, "no topic attempt-deletions, deletion-receipts")


def test_counts_of_a_topic_never_created_is_no_empty_table(monkeypatch, capsys):
    """A mistyped TOPIC_PREFIX printed an empty table and exited 0."""
    brokers_topics(monkeypatch, [])
    monkeypatch.setattr(kafka_io, "current_counts", lambda settings, timeout_s=30.0: {})
    assert run(["counts"]) == 1
    one_line_error(capsys, "no topic active-learner-counts")


def test_settle_over_topics_never_created_is_no_success(monkeypatch, capsys):
    """A mistyped TOPIC_PREFIX was "settled" at once: no lag over no topics, no counts."""
    import streams.kafka.settle as settle

    brokers_topics(monkeypatch, [])
    monkeypatch.setattr(settle, "wait_until_settled", never)
    assert run(["settle", "--timeout", "5"]) == 1
    one_line_error(capsys, "no topic launches", "run `active-learners topics` first")


@pytest.mark.parametrize(
    "refusal",
    [
        MessageSizeTooLargeError("The message is 50000088 bytes when serialized"),
        KafkaTimeoutError("Failed to update metadata after 60.0 secs."),
    ],
)
def test_a_kafka_client_refusal_on_the_way_is_one_line(refusal, tmp_path, monkeypatch, capsys):
    """kafka-python raises these from `send` itself (a line over the 2 MiB a request may
    carry; a topic that went away): they ended the command with a traceback."""
    brokers_topics(monkeypatch, ALL_TOPICS)

    def refuses(*args: Any, **kwargs: Any) -> int:
        raise refusal

    monkeypatch.setattr(kafka_io, "produce_records", refuses)
    assert run(["produce", dataset(tmp_path)]) == 1
    one_line_error(capsys, "active-learners produce: error: Kafka:", type(refusal).__name__)


def test_produce_of_a_missing_file_says_so_before_waiting_for_the_broker(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(data, "require_broker", never)
    assert run(["produce", str(tmp_path / "missing.jsonl")]) == 1
    one_line_error(capsys, "cannot read", "missing.jsonl: No such file")


def test_bench_refuses_a_web_port_beyond_the_last_port(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["bench", "--web-port", "70000"])
    assert exit_info.value.code == 2
    one_line_error(capsys, "at most 65,535")


# -- delete's arguments ---------------------------------------------------------------------


def sent_requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    brokers_topics(monkeypatch, ALL_TOPICS)
    sent: list[dict[str, Any]] = []

    def receipt(settings: Settings, request: dict[str, Any], timeout_s: float) -> dict:
        sent.append(request)
        return {**request, "attempts_affected": 0, "learners_affected": 0, "windows": []}

    monkeypatch.setattr(deletions, "send_and_wait", receipt)
    return sent


def test_a_learners_file_with_a_byte_order_mark_selects_its_first_learner(
    tmp_path, monkeypatch, capsys
):
    """A spreadsheet's UTF-8 export starts with a BOM: it became part of the first id, and
    that learner's attempts silently stayed."""
    sent = sent_requests(monkeypatch)
    path = tmp_path / "learners.txt"
    path.write_bytes(b"\xef\xbb\xbfl-1\r\nl-2\r\n")
    assert run(["delete", "--tenant", "a", "--learners-file", str(path), "--preview"]) == 0
    assert sorted(sent[0]["learner_ids"]) == ["l-1", "l-2"]


def test_a_learners_file_keeps_ids_that_start_with_a_hash(tmp_path, monkeypatch):
    """Any string is a valid id; a line starting with `#` was skipped as a comment that the
    README never mentions: that learner silently stayed counted."""
    sent = sent_requests(monkeypatch)
    path = tmp_path / "learners.txt"
    path.write_text("#1\nl-2\n")
    assert run(["delete", "--tenant", "a", "--learners-file", str(path), "--preview"]) == 0
    assert sorted(sent[0]["learner_ids"]) == ["#1", "l-2"]


def test_a_learners_file_that_is_not_utf8_names_the_option_and_file(tmp_path, capsys):
    path = tmp_path / "learners.bin"
    path.write_bytes(b"l-1\n\xd5\x00\xff\n")
    assert run(["delete", "--tenant", "a", "--learners-file", str(path), "--preview"]) == 1
    one_line_error(capsys, f"--learners-file: {path} is not UTF-8")


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("--older-than", "--older-than: expected 8mo"),
        ("--learners-file", "--learners-file: cannot read"),
        ("--attempt", "--attempt: expected LEARNER:ATTEMPT"),
        ("--team", "--team: an id is 1 to 256"),
    ],
)
def test_an_empty_selector_value_is_named_as_given(option, words, capsys):
    """`--older-than ""` (an unset shell variable) was told "give exactly one of ...": the
    option was given."""
    assert run(["delete", "--tenant", "a", option, "", "--preview"]) == 1
    one_line_error(capsys, words)


@pytest.mark.parametrize("cutoff", ["2099-01-01", "2099-01-01T00:00:00Z"])
def test_a_cutoff_in_the_future_is_refused_before_anything_is_sent(cutoff, capsys):
    """The worker refuses it with an error receipt; the CLI sent it first (and, with no
    worker running, waited two minutes for that receipt)."""
    assert run(["delete", "--tenant", "a", "--older-than", cutoff, "--preview"]) == 1
    one_line_error(capsys, "--older-than: 2099-01-01T00:00:00+00:00 is in the future")


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PARTITIONS": "2147483648"}, "PARTITIONS must be at most 10000"),
        ({"PARTITIONS": "120000"}, "PARTITIONS must be at most 10000"),
        ({"REPLICATION_FACTOR": "32768"}, "REPLICATION_FACTOR must be at most 32767"),
        ({"DELETION_MAX_SHARE": "500"}, "DELETION_MAX_SHARE must be at most 100"),
        ({"WEB_ADVERTISED_HOST": "worker-1:6066"}, "WEB_ADVERTISED_HOST: .* is not a host name"),
        ({"WEB_ADVERTISED_HOST": "http://worker-1"}, "WEB_ADVERTISED_HOST: .* is not a host name"),
        ({"WEB_ALLOWED_HOSTS": "localhost:6066"}, "WEB_ALLOWED_HOSTS: .* is not a host name"),
        ({"WEB_ALLOWED_HOSTS": "a.example, https://b.example"}, "WEB_ALLOWED_HOSTS"),
        ({"WEB_HOST": "0.0.0.0:6066"}, "WEB_HOST: .* is not a host name"),
        ({"PARTITIONS": "9" * 5000}, "PARTITIONS must be a whole number"),
        ({"TOPIC_PREFIX": "team a-"}, "TOPIC_PREFIX: .* character Kafka refuses"),
        ({"TOPIC_PREFIX": "tenant/"}, "TOPIC_PREFIX: .* character Kafka refuses"),
        ({"TOPIC_PREFIX": "präfix-"}, "TOPIC_PREFIX: .* character Kafka refuses"),
        ({"TOPIC_PREFIX": "p" * 151}, "TOPIC_PREFIX must be at most 150 characters"),
    ],
)
def test_settings_no_client_or_worker_can_use_are_one_line_errors(env, words) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        Settings.from_env(env)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_a_topic_prefix_kafka_accepts_is_kept_as_given() -> None:
    assert Settings.from_env({"TOPIC_PREFIX": "Stage_2.eu-"}).topic("launches") == (
        "Stage_2.eu-launches"
    )
    assert Settings.from_env({"TOPIC_PREFIX": "p" * 150}).topic_prefix == "p" * 150


def test_topics_refuses_a_partition_count_kafka_cannot_carry(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["topics", "--partitions", "2147483648"])
    assert exit_info.value.code == 2
    one_line_error(capsys, "at most 10,000")


def test_an_ipv6_advertised_host_goes_into_urls_in_brackets() -> None:
    """faust built the URL the other workers call as http://::1:6066: a ValueError traceback
    at the worker's start."""
    settings = Settings.from_env({"WEB_ADVERTISED_HOST": "fd00::1"})
    assert settings.advertised_host == "[fd00::1]"
    assert "fd00::1" in settings.allowed_hosts  # a Host header `[fd00::1]:6066` names it so
    assert Settings.from_env({"WEB_ADVERTISED_HOST": "[fd00::1]"}) == settings


def test_a_worker_whose_web_port_is_taken_stops_before_creating_topics(
    tmp_path, monkeypatch, capsys
):
    """The web server binds only after the worker joined Kafka: a second worker on the same
    WEB_PORT created its topics, joined, then died with a traceback."""
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("WEB_PORT", str(taken.getsockname()[1]))
        assert run(["worker"]) == 1  # ensure_topics fails the test
    one_line_error(capsys, "WEB_HOST/WEB_PORT: cannot listen on 127.0.0.1:", "in use")


def test_a_worker_whose_web_host_does_not_resolve_stops_before_creating_topics(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("API_ADMIN_TOKENS", "ops:" + "s" * 32)  # WEB_HOST binds only with tokens
    monkeypatch.setenv("WEB_HOST", "no-such-host.invalid")
    assert run(["worker"]) == 1
    one_line_error(capsys, "cannot listen on no-such-host.invalid:")


# -- generate -------------------------------------------------------------------------------


def test_generate_refuses_a_now_whose_history_starts_before_1900(tmp_path, capsys) -> None:
    """--now accepted 1900-01-01, and the 420 days of history before it were launches from
    1898 that the worker dead-letters and `verify` refuses."""
    out = tmp_path / "ds.jsonl"
    argv = ["generate", "--launches", "5", "--now", "1900-06-01T00:00:00Z", "--out", str(out)]
    assert run(argv) == 1
    one_line_error(capsys, "--now: the history of 420 days before it must start in 1900")
    assert not out.exists()
