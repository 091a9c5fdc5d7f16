"""The PostgreSQL baseline's SQL (streams/tools/pg_baseline.py): what the server is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.tools import pg_baseline
from streams.tools.pg_baseline import ROWS_PER_TRANSACTION, Baseline, insert_statements


def launch(n: int, learner: str = "l1") -> tuple[bytes, bytes]:
    value = {
        "tenant_id": "acme",
        "learner_id": learner,
        "attempt_id": f"a{n}",
        "element_id": "e",
        "launched_at": "2026-03-01T10:00:00+00:00",
    }
    return b"acme/" + learner.encode(), json.dumps(value).encode()


def test_a_statement_inserts_a_thousand_rows_in_its_own_transaction() -> None:
    statements = list(insert_statements(launch(n) for n in range(2_500)))
    assert [s.count("),(") + 1 for s in statements] == [ROWS_PER_TRANSACTION] * 2 + [500]
    assert all(s.endswith(" ON CONFLICT DO NOTHING;\n") for s in statements)
    assert all("BEGIN" not in s for s in statements)  # autocommit: one transaction each


def test_quotes_in_ids_are_doubled_not_executed() -> None:
    (statement,) = insert_statements([launch(1, learner="o'brien'); DROP TABLE attempts; --")])
    assert "'o''brien''); DROP TABLE attempts; --'" in statement
    assert statement.count("INSERT") == 1


def test_the_line_names_the_rate_and_the_query() -> None:
    line = Baseline(1_000_000, 20.0, 36.4, 500_000, "PostgreSQL 15.18").line()
    assert line.startswith("PostgreSQL baseline 50,000/s (PostgreSQL 15.18: 1,000,000 attempts")
    assert "in 36 ms" in line


def test_the_rows_named_are_those_the_count_goes_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ "COUNT(DISTINCT) of one tenant's window over its N rows": N counts the rows of that
    window, not every row of the tenant (a fifth more over the bench's 400 days)."""
    asked: list[str] = []

    class Server:
        folder = tmp_path

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

        def psql(self, script: str | Path, timing: bool = False) -> str:
            if isinstance(script, Path):
                return ""
            asked.append(script)
            if script.startswith("SHOW"):
                return "15.18\n"
            if script.startswith("SELECT COUNT(DISTINCT"):
                return "7707\nTime: 13.6 ms\n7707\nTime: 11.6 ms\n7707\nTime: 12.0 ms\n"
            return "8123\n" if script.startswith("SELECT COUNT(*)") else ""

    monkeypatch.setattr(pg_baseline, "Server", Server)
    window = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")
    baseline = pg_baseline.measure([], "bench-big", window)
    (rows_sql,) = [sql for sql in asked if sql.startswith("SELECT COUNT(*)")]
    assert "tenant_id = 'bench-big'" in rows_sql
    assert f"launched_at >= '{window[0]}' AND launched_at < '{window[1]}'" in rows_sql
    assert baseline.window_rows == 8123
    assert baseline.count_ms == 11.6
    assert "over its 8,123 rows in 12 ms" in baseline.line()
