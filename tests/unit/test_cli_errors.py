"""Bad arguments and settings: one line on stderr and a non-zero exit, never a traceback, and
nothing sent or created first (no broker: every Kafka step is stubbed to fail the test)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streams.cli.common as common
import streams.cli.data as data
import streams.cli.deletions as deletions
import streams.cli.measure as measure
import streams.cli.ops as ops
import streams.cli.reports as reports
import streams.kafka.io as kafka_io
import streams.kafka.settle as settle
from streams.cli.main import run
from streams.cli.state_lock import hold_state_dir
from streams.config.settings import ConfigError, Settings
from streams.http.tokens import TokenBook
from streams.kafka.admin import BrokerUnavailable

REPO = Path(__file__).resolve().parents[2]
UNUSED_BROKER = "127.0.0.1:1"  # never a broker: a test that reaches Kafka fails fast


def never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("reached Kafka: the error should have come first")


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", UNUSED_BROKER)
    for name in ("TOPIC_PREFIX", "API_TOKENS_FILE", "API_READ_TOKENS", "API_ADMIN_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    for module in (data, deletions, measure):
        monkeypatch.setattr(module, "require_broker", never)
    for module in (data, deletions):
        monkeypatch.setattr(module, "require_topics", never)
    monkeypatch.setattr(ops, "ensure_topics", never)
    monkeypatch.setattr(deletions, "send_and_wait", never)
    monkeypatch.setattr(kafka_io, "produce_records", never)
    monkeypatch.setattr(kafka_io, "current_counts", never)


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["topics", "--timeout", "nan"], "finite"),
        (["topics", "--timeout=inf"], "finite"),
        (["settle", "--timeout=-inf"], "finite"),
        (["bench", "--latency-seconds", "inf"], "finite"),
        (["simulate", "--shrink-seconds", "nan"], "finite"),
        (["soak", "--garbage", "-5"], "at least 0"),
        (["generate", "--tenants", "100001"], "at most 100,000"),
        (["generate", "--launches", "10000001"], "at most 10,000,000"),
    ],
)
def test_bad_numbers_get_one_line_and_exit_2(argv, words, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    one_line_error(capsys, words)


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("servers", [",", "a:9092,", "a:9092,,b:9092", "host:abc", "[::1", "h:0"])
def test_a_malformed_bootstrap_list_is_a_config_error(servers, monkeypatch, capsys) -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS") as info:
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": servers})
    assert "\n" not in str(info.value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", servers)
    assert run(["topics"]) == 1
    one_line_error(capsys, "KAFKA_BOOTSTRAP_SERVERS")


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("a:9092, b:9093", ["a:9092", "b:9093"]),
        ("[::1]:9092", ["[::1]:9092"]),
        ("kafka-0.kafka.svc", ["kafka-0.kafka.svc"]),
        ("", ["localhost:9092"]),
    ],
)
def test_well_formed_bootstrap_lists_are_kept(servers, expected) -> None:
    assert Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": servers}).bootstrap_list == expected


@pytest.mark.parametrize(
    ("files", "setting"),
    [
        ({"KAFKA_SSL_CAFILE": "garbage"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SSL_CAFILE": ""}, "KAFKA_SSL_CAFILE"),  # an empty file
        ({"KAFKA_SSL_CERTFILE": "garbage", "KAFKA_SSL_KEYFILE": "garbage"}, "KAFKA_SSL_CERTFILE"),
    ],
)
def test_tls_files_that_are_not_pem_are_a_config_error(files, setting, tmp_path) -> None:
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL"}
    for name, content in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(content)
        env[name] = str(path)
    with pytest.raises(ConfigError, match=setting) as info:
        Settings.from_env(env)
    assert "\n" not in str(info.value) and "PEM" in str(info.value)


def test_web_port_beyond_the_last_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="WEB_PORT must be at most 65535"):
        Settings.from_env({"WEB_PORT": "70000"})


# -- verify, produce ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"tenant_id": "a", "cycle_start": "2026-01-01"}\nnot json\n', ":2: not JSON"),
        (b"[1]\n", ":1: not a JSON object"),
        (b'{"event_id": "e", "tenant_id": "a"}\n', ":1: learner_id: Field required"),
        (b'{"cycle_start": "2026-01-01"}\n', ":1: tenant_id"),
        (b"\n\xff\xfe\n", ":2: not UTF-8"),
        (b"[" * 100_000 + b"\n", ":1: not JSON (nested too deep)"),
        # a line `produce` cannot route is no launch or license either: an error, not skipped
        (b'{"foo": 1}\n', ":1: cannot tell the topic"),
    ],
)
def test_verify_of_a_malformed_dataset_names_file_and_line(content, words, tmp_path, capsys):
    path = tmp_path / "ds.jsonl"
    path.write_bytes(content)
    assert run(["verify", str(path)]) == 1
    one_line_error(capsys, f"{path}{words}")


def test_verify_checks_the_broker_before_waiting_for_counts(tmp_path, monkeypatch, capsys):
    path = tmp_path / "ds.jsonl"
    path.write_text('{"tenant_id": "a", "cycle_start": "2026-01-01", "window_months": 1}\n')

    def no_broker(settings: Settings, timeout_s: float) -> None:
        raise BrokerUnavailable(f"no Kafka broker answered within {timeout_s:g}s")

    monkeypatch.setattr(data, "require_broker", no_broker)
    assert run(["verify", str(path)]) == 1
    one_line_error(capsys, "no Kafka broker answered within 15s")


def test_a_reader_that_stops_early_ends_the_command_without_a_traceback(monkeypatch) -> None:
    """`active-learners counts --format csv | head`: the pipe closes under the command's print."""
    import streams.__main__ as entry

    def print_into_a_closed_pipe(argv: list[str]) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(entry, "run", print_into_a_closed_pipe)
    read_end, write_end = os.pipe()
    os.close(read_end)  # `head` has read its line and gone
    with os.fdopen(write_end, "w") as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert entry.main(["counts", "--format", "csv"]) == 1
        monkeypatch.undo()


def test_a_broken_pipe_that_is_not_stdout_is_an_error_of_its_own(monkeypatch) -> None:
    """A socket or another pipe the command writes to: not a reader of stdout gone quiet."""
    import streams.__main__ as entry

    def a_socket_closed(argv: list[str]) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(entry, "run", a_socket_closed)
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "w") as open_pipe:
            monkeypatch.setattr(sys, "stdout", open_pipe)
            with pytest.raises(BrokenPipeError):
                entry.main(["counts"])
            monkeypatch.undo()
    finally:
        os.close(read_end)


def test_produce_stops_at_a_line_that_is_not_utf8(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"tenant_id": "a", "cycle_start": "2026-01-01"}\n\xff\n')
    sent: list[Any] = []

    def produce(settings, records, progress=None, partition_of=None):  # type: ignore[no-untyped-def]
        sent.extend(records)
        return len(sent)

    monkeypatch.setattr(data, "require_broker", lambda settings, timeout_s: None)
    monkeypatch.setattr(data, "require_topics", lambda settings, names, timeout_s: None)
    monkeypatch.setattr(kafka_io, "produce_records", produce)
    assert run(["produce", str(path)]) == 1
    one_line_error(capsys, f"{path}:2: not UTF-8", "nothing was sent")
    assert sent == []  # the file is checked whole before the first record goes
    # with --topic every line goes as it is, bytes that are not UTF-8 included
    sent.clear()
    assert run(["produce", str(path), "--topic", "launches"]) == 0
    assert [value for _, _, value in sent][1] == b"\xff"


# -- report, forecast -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "words"),
    [
        ("foo", "--api: expected http://"),
        ("file:///etc/passwd", "--api: expected http://"),
        ("http://[::1", "--api: not a URL"),
        ("http://host:abc", "--api: not a URL"),
        ("http://a\nb", "--api: expected http://"),
    ],
)
def test_a_bad_api_url_is_one_line(api, words, monkeypatch, capsys) -> None:
    monkeypatch.setattr(reports.urllib.request, "urlopen", never)
    assert run(["forecast", "--tenant", "a", "--api", api]) == 1
    one_line_error(capsys, words)


@pytest.mark.parametrize("token", ["a" * 40 + "\nX-Other: 1", "é" * 40, "★" * 40])
def test_a_token_no_header_can_carry_is_one_line(token, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACTIVE_LEARNERS_TOKEN", token)
    monkeypatch.setattr(reports.urllib.request, "urlopen", never)
    assert run(["report", "--tenant", "a", "--api", "http://127.0.0.1:1"]) == 1
    one_line_error(capsys, "ACTIVE_LEARNERS_TOKEN must be printable ASCII")


@pytest.mark.parametrize(
    ("argv", "body", "words"),
    [
        (["forecast", "--tenant", "a"], b"<html>", "not JSON"),
        (["forecast", "--tenant", "a"], b'{"x": 1}', "unexpected answer"),
        (["report", "--tenant", "a"], b"[1, 2]", "unexpected answer"),
        (["report", "--tenant", "a", "--window", "2026-01-01"], b"<html>\n", "not JSON lines"),
    ],
)
def test_an_answer_that_is_not_the_api_is_one_line(argv, body, words, monkeypatch, capsys):
    monkeypatch.setattr(reports, "fetch", lambda base, path, timeout_s=300.0: body)
    assert run([*argv, "--api", "http://127.0.0.1:1"]) == 1
    one_line_error(capsys, words)


# -- generate -------------------------------------------------------------------------------


@pytest.mark.parametrize("tenants", ["1", "2", "3"])
def test_generate_works_for_few_tenants(tenants, tmp_path) -> None:
    path = tmp_path / "ds.jsonl"
    assert run(["generate", "--launches", "50", "--tenants", tenants, "--out", str(path)]) == 0
    records = [json.loads(line) for line in path.read_text().splitlines()]
    licensed = {r["tenant_id"] for r in records if "cycle_start" in r}
    assert len(licensed) == int(tenants) - 1, "the last tenant has no license"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--out", ""], "--out: give a file name"),
        (["--out", "{tmp}/missing/ds.jsonl"], "--out: cannot write"),
        (["--out", "{tmp}"], "--out: cannot write"),
        (["--now", "0001-01-01T00:00:00Z"], "--now: must be between the years 1900 and 2500"),
        (["--now", "2026-01-01Z"], "--now: needs a time and an offset"),
    ],
)
def test_generate_bad_out_and_now_are_one_line(argv, words, tmp_path, capsys) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert run(["generate", "--launches", "5", *argv]) == 1
    one_line_error(capsys, words)


# -- delete ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--older-than", "1000000d"], "--older-than: 1000000d reaches before the year 1"),
        (["--older-than", "99999999999999999999w"], "reaches before the year 1"),
        (["--older-than", "2000y"], "--older-than: must be between the years 1900 and 2500"),
        (["--tenant", "", "--older-than", "2d"], "--tenant: an id is 1 to 256 characters"),
        (["--tenant", "a/b", "--older-than", "2d"], "no '/'"),
        (["--tenant", "a\tb", "--older-than", "2d"], "no control character"),
        (["--tenant", "t" * 257, "--older-than", "2d"], "--tenant: an id is 1 to 256"),
        (["--attempt", "l1:a\tb"], "--attempt: an id"),
        (["--attempt", "l/1/a1"], "--attempt: expected LEARNER:ATTEMPT or LEARNER/ATTEMPT"),
    ],
)
def test_delete_refuses_what_the_worker_would_dead_letter(argv, words, capsys) -> None:
    if "--tenant" not in argv:
        argv = ["--tenant", "acme", *argv]
    assert run(["delete", *argv, "--preview"]) == 1  # nothing sent: send_and_wait fails the test
    one_line_error(capsys, words)


def test_physical_delete_without_terminal_sends_not_even_a_preview(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert run(["delete", "--tenant", "acme", "--older-than", "2y"]) == 1
    one_line_error(capsys, "run it in a terminal or add --yes")


def test_delete_checks_the_broker_within_its_timeout(monkeypatch, capsys) -> None:
    asked: list[float] = []

    def no_broker(settings: Settings, timeout_s: float) -> None:
        asked.append(timeout_s)
        raise BrokerUnavailable("no Kafka broker answered")

    monkeypatch.setattr(deletions, "require_broker", no_broker)
    assert (
        run(["delete", "--tenant", "a", "--older-than", "2y", "--preview", "--timeout", "2"]) == 1
    )
    assert asked == [2.0]
    one_line_error(capsys, "no Kafka broker answered")


def test_settle_checks_the_broker_within_its_timeout(monkeypatch, capsys) -> None:
    asked: list[float] = []

    def no_broker(settings: Settings, timeout_s: float = 15.0) -> None:
        asked.append(timeout_s)
        raise BrokerUnavailable("no Kafka broker answered")

    monkeypatch.setattr(settle, "admin_client", no_broker)
    monkeypatch.setattr(common, "admin_client", no_broker)  # its check of the topics first
    assert run(["settle", "--timeout", "2"]) == 1
    assert asked == [2.0]
    one_line_error(capsys, "no Kafka broker answered")


# -- worker, notifier -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "argv", "words"),
    [
        ({"STATE_DIR": "{file}"}, [], "STATE_DIR={file}: not a folder"),
        ({"STATE_DIR": "{file}/sub"}, [], "STATE_DIR={file}/sub: cannot create the folder"),
        ({"WEB_PORT": "65535"}, ["--processes", "2"], "needs the ports up to 65536"),
        ({"API_TOKENS_FILE": "{not_utf8}"}, [], "API_TOKENS_FILE: {not_utf8} is not UTF-8"),
        ({"API_TOKENS_FILE": "{deep}"}, [], "not JSON (nested too deep)"),
        ({"LOG_FORMAT": "xml"}, [], "LOG_FORMAT must be text or json"),
        ({"METRICS_TOKEN": "short"}, [], "METRICS_TOKEN has 5 characters"),
    ],
)
def test_worker_settings_are_checked_before_any_topic_is_created(
    env, argv, words, tmp_path, monkeypatch, capsys
) -> None:
    files = bad_files(tmp_path)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**files))
    assert run(["worker", *argv]) == 1  # ensure_topics fails the test
    one_line_error(capsys, words.format(**files))


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"SMTP_TLS": "bogus"}, "SMTP_TLS must be starttls, implicit or none"),
        ({"WEBHOOK_SECRET": "short"}, "WEBHOOK_SECRET must have at least"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be text or json"),
        ({"STATE_DIR": "{file}"}, "not a folder"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN has 5 characters"),
        ({"NOTIFIER_PORT": "70000"}, "NOTIFIER_PORT must be at most 65535"),
    ],
)
def test_notifier_settings_are_checked_before_any_topic_is_created(
    env, words, tmp_path, monkeypatch, capsys
) -> None:
    files = bad_files(tmp_path)
    monkeypatch.delenv("SMTP_HOST", raising=False)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**files))
    assert run(["notifier"]) == 1
    one_line_error(capsys, words)


def test_a_notifier_whose_port_is_taken_stops_before_creating_topics(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("SMTP_HOST", raising=False)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("NOTIFIER_PORT", str(port))
        assert run(["notifier"]) == 1  # ensure_topics fails the test
    one_line_error(capsys, f"WEB_HOST/NOTIFIER_PORT: cannot listen on 127.0.0.1:{port}")


def bad_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "not-utf8.json").write_bytes(b'{"tokens": ["\xff"]}')
    (tmp_path / "deep.json").write_text('{"tokens": ' + "[" * 100_000)
    return {
        "file": str(tmp_path / "a-file"),
        "not_utf8": str(tmp_path / "not-utf8.json"),
        "deep": str(tmp_path / "deep.json"),
    }


def test_a_tokens_file_that_is_not_utf8_or_too_deep_is_a_config_error(tmp_path) -> None:
    files = bad_files(tmp_path)
    for name in ("not_utf8", "deep"):
        with pytest.raises(ConfigError) as info:
            TokenBook.from_env({"API_TOKENS_FILE": files[name]})
        assert "\n" not in str(info.value)


# -- bench, soak ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["bench", "soak"])
def test_bench_and_soak_check_their_report_file_first(command, tmp_path, capsys) -> None:
    assert run([command, "--write", str(tmp_path / "missing" / "r.md")]) == 1
    one_line_error(capsys, "--write: no folder")
    assert run([command, "--write", str(tmp_path)]) == 1
    one_line_error(capsys, "is a folder")


# -- one worker (and one notifier) per STATE_DIR ---------------------------------------------

HOLD_THE_LOCK = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from streams.cli.state_lock import hold_state_dir\n"
    "hold_state_dir(Path(sys.argv[1]), sys.argv[2])\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


@contextlib.contextmanager
def another_process_holding(state: Path, kind: str) -> Iterator[subprocess.Popen[str]]:
    state.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(state), kind],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(("command", "kind"), [("worker", "worker"), ("notifier", "notifier")])
def test_a_second_process_of_a_kind_on_one_state_dir_stops_before_creating_topics(
    command, kind, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("SMTP_HOST", raising=False)
    state = tmp_path / "state"
    monkeypatch.setenv("STATE_DIR", str(state))
    with another_process_holding(state, kind) as holder:
        assert run([command]) == 1  # ensure_topics fails the test
    one_line_error(
        capsys, f"STATE_DIR={state} is in use by another {kind} (pid {holder.pid})", "of its own"
    )


def test_a_worker_and_a_notifier_share_a_state_dir_and_a_killed_holder_leaves_no_lock(
    tmp_path,
) -> None:
    state = tmp_path / "state"
    with another_process_holding(state, "worker"):
        hold_state_dir(state, "notifier")  # the two kinds' files differ: no conflict
        with pytest.raises(ConfigError, match="in use by another worker"):
            hold_state_dir(state, "worker")
    # the holder was killed (SIGKILL): the kernel released its lock with it
    assert hold_state_dir(state, "worker") == state / "worker.lock"
    assert (state / "worker.lock").read_text() == f"{os.getpid()}\n"
