"""Edge inputs for a schedule (`SIMULATE_EDGES=1`), drawn from a stream of their own so that the
seeds of REGRESSIONS keep their schedules.

What the plain workload makes rarely or never (helper-64's review, 2026-12-03):

- a license that changes only its limit, thresholds or `notify` and keeps its windows (the plain
  workload draws a new `cycle_start` for every new license: every change is a re-cut), so that
  thresholds go `down` on a limit raised and come back `up` (150 plain seeds made no `down`);
- time zones whose clocks change at local midnight (America/Santiago, America/Havana,
  Asia/Beirut, America/Asuncion, Africa/Cairo) and licenses whose next window begins within days;
- launches at a window's first instant, the microsecond before and after it, written with
  offsets other than `Z`, fractional seconds of 1-9 digits, `t`/`z`, a space, `+hhmm`;
- `older_than` exactly at a window's start or at a stored attempt's `launched_at` (in another
  spelling), `requested_at` exactly at an attempt's `launched_at` (not covered: "before");
- launches and requests exactly at the `future` bound, and a microsecond past it;
- physical deletions of learners counted in the current window, with a limit flip behind them
  (a deletion in flight holds the tenant's thresholds);
- learner and attempt ids that look like internal keys or differ only by normalisation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from schemas import topics
from streams.domain.windows import Cut
from streams.tools.simulate.naive_windows import add_months, window_at, window_of

if TYPE_CHECKING:
    from streams.tools.simulate.workload import Input, Workload

MIDNIGHT_ZONES = (
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "America/Asuncion",
    "Africa/Cairo",
    "Australia/Lord_Howe",
)
# (zone, date) whose local midnight is in a DST gap or occurs twice: windows anchored on them
MIDNIGHT_CHANGES = (
    ("America/Havana", date(2025, 3, 9)),
    ("America/Havana", date(2025, 11, 2)),
    ("America/Havana", date(2026, 3, 8)),
    ("America/Havana", date(2026, 11, 1)),
    ("Asia/Beirut", date(2025, 3, 30)),
    ("Asia/Beirut", date(2026, 3, 29)),
    ("America/Santiago", date(2025, 9, 7)),
    ("Africa/Cairo", date(2025, 4, 25)),
    ("Africa/Cairo", date(2026, 4, 24)),
)
ODD_IDS = (
    "#epoch",
    "lic",
    "m",
    "x",
    "t",
    "a",
    "hl",
    "done",
    "%2F",
    "..",
    "e\u0301",
    "\u00e9",
    "\u2028",
    "\u0085",
    "\U0001f984",
    "z" * 256,
    "\u00e9" * 256,
)
OFFSETS = (0, 0, 345, -210, 840, -720, 60, -300)  # minutes


def spell(instant: datetime, draw: random.Random) -> str:
    """`instant` in one of RFC 3339's spellings."""
    minutes = draw.choice(OFFSETS)
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    text = local.strftime("%Y-%m-%d") + draw.choice("TTTt ") + local.strftime("%H:%M:%S")
    digits = draw.choice((0, 0, 3, 6, 6, 9))
    if local.microsecond or digits:
        fraction = f"{local.microsecond:06d}"
        if digits == 9:
            fraction += draw.choice(("000", "999", "500"))
        elif digits:
            fraction = fraction[: max(digits, len(fraction.rstrip("0")))]
        text += "." + fraction
    if minutes == 0 and draw.random() < 0.7:
        return text + draw.choice("ZZz")
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return text + (
        f"{sign}{hours:02d}{mins:02d}" if draw.random() < 0.2 else f"{sign}{hours:02d}:{mins:02d}"
    )


def _at(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else None


class Edges:
    def __init__(self, seed: int, workload: Workload) -> None:
        self.draw = random.Random(f"edges/{seed}")
        self.rate = self.draw.choice((0.1, 0.25, 0.45))
        self.w = workload
        self.queue: list[Callable[[datetime], Input]] = []
        if self.draw.random() < 0.5:
            for tenant in workload.tenants:
                odd = self.draw.sample(ODD_IDS, self.draw.randint(1, 3))
                workload.learners[tenant] = [*workload.learners[tenant], *odd]

    def maybe(self, now: datetime) -> Input | None:
        if self.queue and self.draw.random() < 0.4:
            return self.queue.pop(0)(now)
        if self.draw.random() >= self.rate:
            return None
        kind = self.draw.choices(
            ("flip", "dst", "boundary", "older_than", "exact", "down", "future"),
            (4, 1, 3, 2, 1, 3, 1),
        )[0]
        return getattr(self, kind)(now)

    # -- helpers --------------------------------------------------------------------------------
    def _license(self, tenant: str) -> dict[str, Any] | None:
        history = self.w.licenses.get(tenant) or []
        return history[-1] if history else None

    def _cut(self, tenant: str) -> Cut:
        value = self._license(tenant)
        if value is None:
            return Cut(date(1970, 1, 1), 12, "UTC")
        return Cut(
            date.fromisoformat(value["cycle_start"]), value["window_months"], value["timezone"]
        )

    def _emit_license(self, tenant: str, value: dict[str, Any], note: str) -> Input:
        self.w.licenses.setdefault(tenant, []).append(value)
        return self.w._input(topics.LICENSES, tenant.encode(), self.w_dumps(value), note)

    @staticmethod
    def w_dumps(value: dict[str, Any]) -> bytes:
        from streams.tools.simulate.workload import _dumps

        return _dumps(value)

    def _terms(self) -> dict[str, Any]:
        d = self.draw
        return {
            "learner_limit": d.choice((1, 2, 2, 3, 4, None, 1_000_000_000)),
            "thresholds": sorted(d.sample((1, 50, 80, 100, 120, 1000), d.randint(1, 3))),
            "notify": d.choice((["admin@example.com"], [], ["b@example.com"])),
        }

    # -- kinds ----------------------------------------------------------------------------------
    def flip(self, now: datetime) -> Input:
        """The tenant's license again with only its limit, thresholds or notify changed."""
        tenant = self.draw.choice(self.w.tenants)
        current = self._license(tenant)
        if current is None:
            return self.dst(now, tenant)
        value = {**current, **self._terms()}
        return self._emit_license(tenant, value, "edge: limit/threshold flip")

    def dst(self, now: datetime, tenant: str | None = None) -> Input:
        """A license in a zone whose clocks change at midnight, its next window days away."""
        d = self.draw
        tenant = tenant or d.choice(self.w.tenants)
        months = d.choice((1, 1, 3))
        soon = (now + timedelta(days=d.randint(0, 6))).date()
        anchor = soon.replace(day=min(soon.day, 28)) if d.random() < 0.5 else soon
        if d.random() < 0.5:  # anchored on a month end: clamped days
            anchor = date(anchor.year, anchor.month, 1) - timedelta(days=1)
            anchor = add_months(anchor, -12)  # (Feb 29 2028: Feb 28 2027)
        zone = d.choice(MIDNIGHT_ZONES)
        if d.random() < 0.4:  # anchored on a day whose midnight the clocks skip or repeat
            zone, anchor = d.choice(MIDNIGHT_CHANGES)
        value = {
            "tenant_id": tenant,
            "cycle_start": anchor.isoformat(),
            "window_months": months,
            "timezone": zone,
            **self._terms(),
        }
        return self._emit_license(tenant, value, "edge: license in a midnight-DST zone")

    def _boundary(self, tenant: str, now: datetime) -> datetime:
        cut = self._cut(tenant)
        # the contract's boundaries (naive_windows.py), not the stages': a launch a microsecond
        # either side of a window's true start tells a window cut a day or an hour off
        window = window_of(cut, now)
        back = self.draw.choice((0, 0, 1, 2))
        return window_at(cut.anchor, cut.months, cut.timezone, window.index - back).start_at

    def _launch(self, tenant: str, learner: str, attempt: str, at: datetime, note: str) -> Input:
        record = {
            "event_id": f"ev{self.w.made}",
            "tenant_id": tenant,
            "learner_id": learner,
            "element_id": self.draw.choice(("e1", "e2")),
            "attempt_id": attempt,
            "launched_at": spell(at, self.draw),
            "content_type": "scorm",
        }
        self.w.attempts.append(record)
        return self.w._launch_record(record, note)

    def _later(
        self, tenant: str, learner: str, attempt: str, at: datetime, note: str
    ) -> Callable[[datetime], Input]:
        return lambda _now: self._launch(tenant, learner, attempt, at, note)

    def boundary(self, now: datetime) -> Input:
        """A launch at (or a microsecond around) a window's first instant."""
        d = self.draw
        tenant = d.choice(self.w.tenants)
        edge = self._boundary(tenant, now)
        at = edge + timedelta(microseconds=d.choice((-1, 0, 0, 1, -1_000_000)))
        learner = d.choice(self.w.learners[tenant])
        attempt = d.choice(("a0", "a1", "a2", "a3", *ODD_IDS[:4]))
        if d.random() < 0.3:  # the same instant again, spelt another way: a repeat
            self.queue.append(
                lambda _now: self._launch(tenant, learner, attempt, at, "edge: respelt")
            )
        return self._launch(tenant, learner, attempt, at, "edge: launch at a window edge")

    def future(self, now: datetime) -> Input:
        """A launch or a request exactly at the `future` bound (1 h after its record's
        timestamp, which is `now`), or a microsecond or a millisecond past it."""
        d = self.draw
        tenant = d.choice(self.w.tenants)
        at = now + timedelta(hours=1, microseconds=d.choice((0, 0, 1, 1000)))
        if d.random() < 0.7:
            learner = d.choice(self.w.learners[tenant])
            return self._launch(tenant, learner, "a0", at, "edge: at the future bound")
        request = {**self._request(tenant, now), "requested_at": spell(at, d)}
        request["learner_ids"] = [d.choice(self.w.learners[tenant])]
        return self._emit_request(request, "edge: requested at the future bound")

    def _request(self, tenant: str, now: datetime, mode: str | None = None) -> dict[str, Any]:
        d = self.draw
        request: dict[str, Any] = {
            "request_id": f"edge{self.w.made}",
            "tenant_id": tenant,
            "mode": mode or d.choice(("physical", "physical", "logical", "preview")),
            "requested_at": spell(now, d),
        }
        if d.random() < 0.5:  # the audit trail: who asked and why, into the receipt
            request["requested_by"] = d.choice(("cli:root", "ops \u00e9", "t" * 256, ""))
            request["reason"] = d.choice(("GDPR art. 17", "\u2028\U0001f984 " * 100, "r" * 1000))
        return request

    def _emit_request(self, request: dict[str, Any], note: str) -> Input:
        self.w.requests.append(request)
        return self.w._input(
            topics.ATTEMPT_DELETIONS, request["tenant_id"].encode(), self.w_dumps(request), note
        )

    def _stored(self, tenant: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.w.attempts
            if a.get("tenant_id") == tenant
            and isinstance(a.get("launched_at"), str)
            and _instant(a["launched_at"]) is not None
        ]

    def older_than(self, now: datetime) -> Input:
        """older_than exactly at a window's start or at an attempt's launched_at."""
        d = self.draw
        tenant = d.choice(self.w.tenants)
        mine = self._stored(tenant)
        if mine and d.random() < 0.5:
            cutoff = _instant(d.choice(mine)["launched_at"])
            assert cutoff is not None
        else:
            cutoff = self._boundary(tenant, now)
        cutoff = min(cutoff, now)
        request = {**self._request(tenant, now), "older_than": spell(cutoff, d)}
        if d.random() < 0.3:  # a launch at the cutoff itself, after the request
            learner = d.choice(self.w.learners[tenant])
            self.queue.append(
                lambda _now: self._launch(tenant, learner, "a3", cutoff, "edge: at the cutoff")
            )
        return self._emit_request(request, "edge: older_than at an edge")

    def exact(self, now: datetime) -> Input:
        """requested_at exactly at an attempt's launched_at (not before it: not covered)."""
        d = self.draw
        tenant = d.choice(self.w.tenants)
        mine = [a for a in self._stored(tenant) if _instant(a["launched_at"]) <= now]  # type: ignore[operator]
        if not mine:
            return self.boundary(now)
        chosen = d.choice(mine)
        at = _instant(chosen["launched_at"])
        assert at is not None
        request = self._request(tenant, at)
        if d.random() < 0.5:
            request["learner_ids"] = [chosen["learner_id"]]
        else:
            request["attempts"] = [
                {"learner_id": chosen["learner_id"], "attempt_id": chosen["attempt_id"]}
            ]
        # and the attempt launched again at requested_at, and a microsecond before it
        for delta in (0, -1):
            when = at + timedelta(microseconds=delta)
            learner, attempt = chosen["learner_id"], f"{chosen['attempt_id']}{delta or ''}"
            self.queue.append(self._later(tenant, learner, attempt, when, "edge: at requested_at"))
        return self._emit_request(request, "edge: requested_at at a launch")

    def down(self, now: datetime) -> Input:
        """A physical deletion of learners counted in the current window, a flip behind it."""
        d = self.draw
        tenant = d.choice(self.w.tenants)
        cut = self._cut(tenant)
        window = window_of(cut, now)
        current = sorted(
            {
                a["learner_id"]
                for a in self._stored(tenant)
                if window.start_at <= _instant(a["launched_at"]) < window.end_at  # type: ignore[operator]
                and isinstance(a.get("learner_id"), str)
            }
        )
        if not current:
            return self.flip(now)
        request = {
            **self._request(tenant, now, "physical"),
            "learner_ids": d.sample(current, min(len(current), d.randint(1, 2))),
        }
        if d.random() < 0.6:
            self.queue.insert(0, lambda _now: self.flip(_now))
        return self._emit_request(request, "edge: deletion in the current window")
