"""Small operational defects an earlier session noticed and left (helper-96, 2026-12-05): what
`worker --processes N` checks of its state folder, `topics --partitions N` over a prefix whose
topics exist with another count, SMTP settings without SMTP_HOST, and the notifier's /metrics.
No broker: the decisions are pure, or the broker's answers given."""

from __future__ import annotations

import argparse
import fcntl
import os
from pathlib import Path

import pytest

import streams.cli.ops as ops
from schemas.topics import TOPICS
from streams.config.settings import ConfigError, Settings
from streams.kafka.admin import TopicMismatch
from tests.unit import test_ops_lifecycle_review

state_env = test_ops_lifecycle_review.state_env  # a worker's settings on a tmp STATE_DIR


# -- 1. what a `worker --processes N` supervisor checks of STATE_DIR -------------------------


def _set(monkeypatch: pytest.MonkeyPatch, prefix: str, processes: int = 2) -> None:
    """The checks of `worker --processes N` before any topic is created."""
    monkeypatch.setenv("TOPIC_PREFIX", prefix)
    ops.check_worker_settings(argparse.Namespace(processes=processes), Settings.from_env())


def _tables_of(folder: Path, deployment: str) -> None:
    """A worker's state folder as a worker of `deployment` leaves it."""
    (folder / "v1" / "tables" / "attempts-0.db").mkdir(parents=True)
    (folder / "v1" / "tables" / "attempts-0.db" / "CURRENT").write_text("MANIFEST-000001\n")
    (folder / "worker.deployment").write_text(f"{deployment}\n")


def test_a_set_refuses_a_childs_folder_of_another_topic_prefix(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor claimed STATE_DIR/v1, which no child uses (each has STATE_DIR/process-<i>):
    a set of a fresh TOPIC_PREFIX on the STATE_DIR of an earlier set passed it, created its
    topics, started, and then each child stopped on its own folder's claim (and the set with
    them). It is refused up front now, naming the child's folder."""
    _tables_of(state_env / "process-1", "old-active-learners")
    with pytest.raises(ConfigError, match="process-1 holds the worker state of 'old-") as info:
        _set(monkeypatch, "new-")
    assert "\n" not in str(info.value)
    assert not (state_env / "process-1" / "worker.deployment").read_text().startswith("new-")
    _set(monkeypatch, "old-")  # the set's own deployment: its folders are its own


def test_a_set_is_not_refused_for_tables_its_children_never_use(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATE_DIR/v1 of a lone worker of another TOPIC_PREFIX stopped a set that never reads it.
    The set leaves it, and its marker, alone: a lone worker of the new prefix is still refused
    those tables."""
    _tables_of(state_env, "old-active-learners")
    _set(monkeypatch, "new-")
    assert (state_env / "worker.deployment").read_text() == "old-active-learners\n"
    # the set's lock is this process's now; a lone worker's claim is checked as it would be
    with pytest.raises(ConfigError, match="holds the worker state of 'old-"):
        _set(monkeypatch, "new-", processes=1)


def test_a_set_refuses_a_childs_folder_a_lone_worker_holds(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker started by hand with STATE_DIR=<dir>/process-0 held child 0's folder: the set
    started, created its topics, and child 0 stopped (with the set) on the lock."""
    child = state_env / "process-0"
    child.mkdir(parents=True)
    fd = os.open(child / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"4242\n", 0)
        with pytest.raises(
            ConfigError, match=r"process-0 is in use by another worker \(pid 4242\)"
        ):
            _set(monkeypatch, "p-")
    finally:
        os.close(fd)
    _set(monkeypatch, "p-")  # free again: the check kept no lock of the child's
    fd = os.open(child / "worker.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if the check had kept it
    finally:
        os.close(fd)


# -- 2. `topics --partitions N` over topics of another count -----------------------------------


class PartitionedAdmin:
    """kafka-python's admin client over topics that exist with these partition counts."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.created: dict[str, int] = {}

    def list_topics(self) -> list[str]:
        return list(self.counts)

    def describe_topics(self, names: list[str]) -> list[dict[str, object]]:
        return [
            {"name": name, "error_code": 0, "partitions": [{}] * self.counts[name]}
            for name in names
            if name in self.counts
        ]

    def create_topics(self, request: dict[str, dict[str, object]], **_: object) -> dict:
        self.created.update({name: int(str(r["num_partitions"])) for name, r in request.items()})
        return {"topics": [{"name": name, "error_code": 0} for name in request]}

    def wait_for_topics(self, names: list[str], timeout_ms: int = 0) -> None:
        pass

    def describe_configs(self, *args: object, **kwargs: object) -> dict:
        return {"topic": {}}  # "not known yet": nothing altered

    def close(self) -> None:
        pass


def _topics_of(monkeypatch: pytest.MonkeyPatch, counts: dict[str, int]) -> PartitionedAdmin:
    from streams.kafka import admin as admin_module

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("TOPIC_PREFIX", "p-")
    monkeypatch.setenv("PARTITIONS", "12")
    fake = PartitionedAdmin({f"p-{name}": n for name, n in counts.items()})
    monkeypatch.setattr(admin_module, "admin_client", lambda *a, **k: fake)
    return fake


# a prefix half made: the first topics `topics --partitions 6` made before it was stopped
HALF_MADE = {"launches": 6, "active-learner-counts": 6, "learner-commands": 6, "attempts": 6}


def test_topics_with_another_partition_count_than_the_existing_ones_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`topics --partitions 12` over a prefix whose co-partitioned topics have 6 created the
    missing ones with 12 beside them, and every worker then refused to start ("internal topics
    disagree"), for good: Kafka cannot take partitions away. It is refused up front."""
    from streams.cli.main import run

    fake = _topics_of(monkeypatch, HALF_MADE)
    assert run(["topics", "--partitions", "12"]) == 1
    out, err = capsys.readouterr()
    assert fake.created == {} and out == ""
    assert err.count("\n") == 1 and "--partitions 12" in err and "exist with 6 partitions" in err
    assert "learner-commands" in err and "launches" not in err  # an input may have any count


def test_missing_topics_beside_existing_ones_of_another_count_are_made_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing co-partitioned topics beside existing ones of another count than PARTITIONS are
    made with that count only when PARTITIONS (or --partitions) says it: unasked, `topics` and
    the worker refuse with nothing made (a topic the broker made on its own would otherwise
    set the whole deployment's count: see the next test)."""
    from streams.cli.main import run

    fake = _topics_of(monkeypatch, HALF_MADE)
    assert run(["topics"]) == 1
    err = capsys.readouterr().err
    assert fake.created == {} and err.count("\n") == 1
    assert "PARTITIONS=12" in err and "exist with 6 partitions" in err and "PARTITIONS=6" in err
    fake = _topics_of(monkeypatch, HALF_MADE)
    with pytest.raises(TopicMismatch):
        ops.ensure_topics(Settings.from_env(), timeout_s=1.0)  # as `worker` calls it
    assert fake.created == {}
    fake = _topics_of(monkeypatch, HALF_MADE)
    assert run(["topics", "--partitions", "6"]) == 0 and set(fake.created.values()) == {6}
    assert "(created with 6 partitions" in capsys.readouterr().out
    fake = _topics_of(monkeypatch, HALF_MADE)
    monkeypatch.setenv("PARTITIONS", "6")
    ops.ensure_topics(Settings.from_env(), timeout_s=1.0)
    assert set(fake.created) == {f"p-{spec.name}" for spec in TOPICS} - set(fake.counts)
    assert set(fake.created.values()) == {6}


def test_a_counts_topic_the_broker_made_on_its_own_does_not_set_the_deployments_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dashboard that subscribed before the service ran had the broker make
    `active-learner-counts` with one partition (`auto.create.topics.enable`); a plain `topics`
    made every other topic with one partition beside it, for good (helper-102's finding)."""
    from streams.cli.main import run

    fake = _topics_of(monkeypatch, {"active-learner-counts": 1})
    assert run(["topics"]) == 1
    err = capsys.readouterr().err
    assert fake.created == {} and "exist with 1 partition (" in err
    assert "active-learner-counts" in err and "remove those topics" in err


@pytest.mark.parametrize(
    ("counts", "partitions", "asked", "expected"),
    [
        ({}, 12, False, 12),  # a new prefix: PARTITIONS
        ({}, 12, True, 12),
        ({"launches": 3, "licenses": 1}, 12, True, 12),  # inputs may have any count
        ({"learner-commands": 6}, 12, False, 6),  # theirs: PARTITIONS is for new prefixes
        ({"learner-commands": 6, "attempts": 6}, 6, True, 6),
        ({"learner-commands": 6}, 12, True, "--partitions 12: .* exist with 6 partitions"),
        ({"active-learner-counts": 1}, 12, False, 1),  # nothing to make: theirs
        ({"attempts": 6, "tenant-commands": 4}, 6, False, r"disagree .*attempts 6, tenant"),
        ({"attempts": 6, "tenant-commands": 4}, 6, True, "disagree"),
    ],
)
def test_copartitioned_partitions(
    counts: dict[str, int], partitions: int, asked: bool, expected: int | str
) -> None:
    from streams.kafka.admin import TopicMismatch, copartitioned_partitions

    if isinstance(expected, int):
        assert copartitioned_partitions(counts, partitions, asked) == expected
        return
    with pytest.raises(TopicMismatch, match=expected) as info:
        copartitioned_partitions(counts, partitions, asked)
    assert "\n" not in str(info.value)


# -- 3. SMTP_* settings without SMTP_HOST --------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SMTP_PORT": "587"}, "SMTP_PORT"),
        ({"SMTP_HOTS": "mail.example", "SMTP_FROM": "lms@x.example"}, "SMTP_FROM, SMTP_HOTS"),
        ({"SMTP_USERNAME": "lms", "SMTP_PASSWORD": "s3cret-pw"}, "SMTP_PASSWORD, SMTP_USERNAME"),
        ({"SMTP_TLS": "implicit", "SMTP_HOST": "  "}, "SMTP_TLS"),
        ({"SMTP_CAFILE": "/etc/ssl/ca.pem"}, "SMTP_CAFILE"),
    ],
)
def test_smtp_settings_without_smtp_host_are_a_one_line_error(
    env: dict[str, str], named: str
) -> None:
    """Without SMTP_HOST the other SMTP_* settings were not read at all: a forgotten or mistyped
    SMTP_HOST (`SMTP_HOTS`) beside them wrote every e-mail to the outbox folder, unsent, with
    nothing said but an INFO line per e-mail."""
    from streams.notifier.smtp import SmtpSettings

    with pytest.raises(ConfigError) as info:
        SmtpSettings.from_env(env)
    message = str(info.value)
    assert message.startswith(f"{named} set without SMTP_HOST") and "\n" not in message
    assert "s3cret-pw" not in message and "lms" not in message


def test_the_notifier_stops_before_anything_on_smtp_settings_without_smtp_host(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli.main import run

    def created(*args: object, **kwargs: object) -> None:
        raise AssertionError("topics created for a refused notifier")

    monkeypatch.setattr(ops, "ensure_topics", created)
    monkeypatch.setenv("SMTP_PORT", "587")
    assert run(["notifier"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SMTP_PORT set without SMTP_HOST" in err, err
    assert not state_env.exists()  # nothing made, not even the state folder


# -- 5. a wrong METRICS_TOKEN at the notifier's /metrics -----------------------------------------


def test_the_notifiers_metrics_log_and_limit_wrong_tokens_as_the_worker_does(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker logs a wrong METRICS_TOKEN with the client's address and answers an address
    with 10 wrong secrets within a minute 429 for the next minute; the notifier's /metrics
    answered 401 without end and said nothing, so its token could be guessed at line speed
    unnoticed. Both use the same FailureLimiter now."""
    from tests.unit.test_notifier_probe import TOKEN, free_port, get, served

    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    port = free_port()
    guess = "g" * 40

    async def calls() -> list[tuple[int, str, str]]:
        answers = [await get(port, "/metrics") for _ in range(12)]  # no secret: no guess
        answers += [await get(port, "/metrics", guess) for _ in range(10)]
        answers.append(await get(port, "/metrics", TOKEN))  # the right one, from that address
        answers.append(await get(port, "/health"))
        return answers

    caplog.set_level("WARNING", logger="active_learners.notifier")
    answers = served(calls(), port)
    statuses = [status for status, _, _ in answers]
    assert statuses == [401] * 22 + [429, 200], statuses
    assert "try again in a minute" in answers[-2][2]
    refused = [r.getMessage() for r in caplog.records if "refused a metrics token" in r.message]
    assert len(refused) == 10 and "from 127.0.0.1 (GET /metrics)" in refused[0], refused
    assert guess not in caplog.text and TOKEN not in caplog.text


# -- 4. what the notifier's /metrics lists -------------------------------------------------------


def test_the_notifiers_metrics_list_its_own_series_and_the_processs_not_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The notifier imports streams.stages (the dead letters it writes), and with it the worker's
    counters and gauges: its /metrics listed all of them (launches, lag, tenants' gauges...) at 0
    for ever, one more always idle target for every query on a worker's series."""
    import streams.notifier.service  # (its counters)
    import streams.stages.metrics  # noqa: F401  (the worker's, as the notifier's process has them)
    from tests.unit.test_notifier_probe import free_port, get, served

    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    port = free_port()
    status, _, text = served(get(port, "/metrics"), port)
    listed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert status == 200
    own = {
        "active_learners_notifications_total",
        "active_learners_deferred_mail_total",
        "active_learners_deferred_mail_pending",
        "active_learners_webhook_deliveries_total",
        "active_learners_webhook_pending",
    }
    assert own <= listed
    # (a labelled counter's children also list `<name>_created`, once a test made one)
    theirs = {
        name
        for name in listed
        if name.startswith("active_learners_")
        and name not in own
        and name.removesuffix("_created") + "_total" not in own
    }
    assert not theirs, sorted(theirs)
    assert {"process_resident_memory_bytes", "python_gc_collections_total", "python_info"} <= listed


# -- tables no way of running reads (helper-96's note) -------------------------------------------


def test_a_worker_names_the_tables_it_will_never_read(tmp_path: Path) -> None:
    """A lone worker's `v1` stays when a deployment moves to `--processes`, and a set's
    `process-<i>` folders stay when it goes back to one process or to fewer: harmless, but
    their disk space is kept without a word. The worker names them at start."""
    (tmp_path / "v1" / "tables").mkdir(parents=True)
    (tmp_path / "v1" / "tables" / "attempts-0.db").write_bytes(b"x")
    for index in range(3):
        (tmp_path / f"process-{index}" / "v1").mkdir(parents=True)
        (tmp_path / f"process-{index}" / "v1" / "t").write_bytes(b"x")
    lone = ops.unused_state(tmp_path, 1)
    assert [note.split(" holds")[0] for note in lone] == [
        str(tmp_path / f"process-{index}") for index in range(3)
    ]
    assert all("never reads" in note and "\n" not in note for note in lone)
    assert [note.split(" holds")[0] for note in ops.unused_state(tmp_path, 2)] == [
        str(tmp_path / "v1"),
        str(tmp_path / "process-2"),
    ]
    assert [note.split(" holds")[0] for note in ops.unused_state(tmp_path, 3)] == [
        str(tmp_path / "v1")
    ]
    (tmp_path / "v1" / "tables" / "attempts-0.db").unlink()  # an empty folder: nothing said
    assert ops.unused_state(tmp_path, 3) == []
