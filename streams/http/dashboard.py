"""The administrators' dashboard: server-rendered HTML with inline SVG (no CDN, works offline).

Pure functions from the API's answers to HTML; streams/http/web.py serves them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from streams.domain.reports import shown_utilization, under_the_limit

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;
 background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:12px 24px;display:flex;
 justify-content:space-between;align-items:center}
header a{color:#cfe0ff;text-decoration:none} main{padding:16px 24px;max-width:1100px}
h1{font-size:22px;margin:8px 0 16px} h2{font-size:17px;margin:24px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0001}
th,td{padding:7px 10px;border-bottom:1px solid #e6e8ee;text-align:left;vertical-align:middle}
th{background:#eef1f6;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.card{background:#fff;padding:14px 16px;box-shadow:0 1px 2px #0001;margin-bottom:16px}
.big{font-size:28px;font-weight:650} .muted{color:#6b7385} .warn{color:#b3261e}
form{background:#fff;padding:12px 16px;box-shadow:0 1px 2px #0001;margin:8px 0 16px}
input,textarea,button{font:inherit;padding:6px 8px} button{cursor:pointer}
.result{background:#eef7ee;border-left:4px solid #2e7d32;padding:10px 14px;margin:8px 0}
.error{background:#fdecea;border-left:4px solid #b3261e;padding:10px 14px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
tr.best td{background:#eef7ee;font-weight:600}
"""


REACHED = " \u2713 reached"
DASH = "\u2013"
BEST = "\u2190 the smallest deletion under the limit"
UNDER_THE_LIMIT = "Under the limit already: no deletion is needed."


def when(instant: str | None) -> str:
    """An ISO instant to the second, for people ("2026-11-29 04:41:50 UTC")."""
    if not instant:
        return "\u2013"
    if instant.endswith(("+00:00", "Z")):
        zone = " UTC"
    else:
        zone = f" {instant[-6:]}" if len(instant) > 19 and instant[-6] in "+-" else ""
    return instant[:19].replace("T", " ") + zone


def bar_color(pct: float | None) -> str:
    if pct is None:
        return "#8aa1c1"
    if pct >= 100:
        return "#c62828"
    if pct >= 80:
        return "#ef8f00"
    return "#2e7d32"


# Valid tenant ids that no path segment can carry: browsers remove "." and ".." segments while
# resolving a link (also written %2E), so these tenants' pages take the id as a query instead.
DOT_IDS = (".", "..")


def tenant_path(tenant_id: str, action: str = "") -> str:
    """The dashboard path of a tenant, its id URL-encoded (an id may hold `?`, `#`, `%`...)."""
    if tenant_id in DOT_IDS:
        return f"/tenant{action}?id={quote(tenant_id, safe='')}"
    return f"/tenants/{quote(tenant_id, safe='')}{action}"


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(csrf)}">'


CATCHING_UP = (
    '<p class="warn">This worker started a moment ago and is still reading the count topics: '
    "the figures below may be missing or too low. Reload in a few seconds.</p>"
)


def page(
    title: str, body: str, who: str | None = None, csrf: str = "", catching_up: bool = False
) -> str:
    """A whole page; `who` signed in (a sign-out form) or None (open mode, sign-in page);
    `catching_up`: the read model has not yet read the output topics to where they ended when
    the worker started (it answers 0 or no tenant until then)."""
    signout = (
        f'<span>{escape(who)} <form method="post" action="/signout" style="display:inline">'
        f"{csrf_field(csrf)}<button>Sign out</button></form></span>"
        if who
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} &middot; active-learners</title><style>{STYLE}</style>"
        "</head><body><header>"
        '<a href="/"><b>active-learners</b> &middot; Active Learners by tenant</a>'
        f"{signout}</header><main>{CATCHING_UP if catching_up else ''}{body}</main></body></html>"
    )


def last_day(window: dict[str, Any]) -> str:
    """A window's last day. Its `end` is the next window's start, not a day of its own: shown as
    the end of the window's days, an administrator read the next window's first day (billing on
    the 31st: "2026-02-28 \u2013 2026-03-31") as this one's last."""
    try:
        return (date.fromisoformat(window["end"]) - timedelta(days=1)).isoformat()
    except (ValueError, TypeError, OverflowError):  # not a date: shown as it is
        return str(window["end"])


def window_days(window: dict[str, Any]) -> str:
    """A window's days for people, its start to its last day ("2026-02-28 \u2013 2026-03-30")."""
    return f"{window['start']} \u2013 {last_day(window)}"


def utilization_bar(pct: float | None) -> str:
    width = 0 if pct is None else min(pct, 150.0) / 150.0 * 240
    label = "no limit" if pct is None else f"{pct:.1f} %"
    return (
        f'<svg width="300" height="18" role="img" aria-label="{label}">'
        '<rect x="0" y="3" width="240" height="12" fill="#e6e8ee"/>'
        f'<rect x="0" y="3" width="{width:.1f}" height="12" fill="{bar_color(pct)}"/>'
        '<line x1="160" y1="0" x2="160" y2="18" stroke="#1d2433" stroke-width="1"/>'
        f'<text x="246" y="14" font-size="11">{escape(label)}</text></svg>'
    )


def tenants_page(
    summaries: list[dict[str, Any]], csrf: str, who: str | None = None, catching_up: bool = False
) -> str:
    """Every tenant, the most utilized first (tenants without a limit last)."""
    ordered = sorted(
        summaries,
        key=lambda s: (s["utilization_pct"] is None, -(s["utilization_pct"] or 0), s["tenant_id"]),
    )
    rows = []
    for s in ordered:
        tenant = escape(s["tenant_id"])
        limit = "&ndash;" if s["learner_limit"] is None else f"{s['learner_limit']:,}"
        licensed = "" if s["licensed"] else ' <span class="muted">(unlicensed)</span>'
        rows.append(
            f'<tr><td><a href="{escape(tenant_path(s["tenant_id"]))}">{tenant}</a>{licensed}</td>'
            f"<td>{escape(window_days(s['window']))} ({s['window']['months']} m)</td>"
            f'<td class="num">{s["active_learners"]:,}</td>'
            f'<td class="num">{s["total_learners"]:,}</td><td class="num">{limit}</td>'
            f"<td>{utilization_bar(shown_utilization(s['active_learners'], s['learner_limit']))}"
            "</td></tr>"
        )
    body = (
        f"<h1>Tenants ({len(ordered)})</h1>"
        "<table><thead><tr><th>Tenant</th><th>Current Active Window</th><th>Active</th>"
        "<th>Total</th><th>Limit</th><th>Utilization (line: 100 %)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return page("Tenants", body, who, csrf, catching_up)


def window_chart(windows: list[dict[str, Any]], limit: int | None, thresholds: list[dict]) -> str:
    """Active Learners per window (bars), the limit (line) and the thresholds (dashed)."""
    shown = windows[-24:]
    width, height, left, bottom, top = 760, 260, 48, 40, 14
    plot_w, plot_h = width - left - 12, height - bottom - top
    peak = max([w["active_learners"] for w in shown] + [limit or 0] + [1])
    peak = max(peak, *(t["learners"] for t in thresholds)) if thresholds else peak
    scale = plot_h / (peak * 1.1)

    def y(value: float) -> float:
        return top + plot_h - value * scale

    parts = [
        f'<svg width="{width}" height="{height}" role="img" '
        'aria-label="Active Learners per window">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#e6e8ee"/>',
    ]
    slot = plot_w / max(len(shown), 1)
    for index, window in enumerate(shown):
        active = window["active_learners"]
        x = left + index * slot + slot * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y(active):.1f}" width="{slot * 0.7:.1f}" '
            f'height="{active * scale:.1f}" fill="#3f6fb5">'
            f"<title>{escape(window['window']['start'])}: {active:,} active</title></rect>"
        )
        if len(shown) <= 12:  # the figure on top of its bar, while there is room for it
            parts.append(
                f'<text class="value" x="{x + slot * 0.35:.1f}" y="{y(active) - 4:.1f}" '
                f'font-size="11" text-anchor="middle">{active:,}</text>'
            )
        if len(shown) <= 12 or index % 2 == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{height - 22}" font-size="10" '
                f'text-anchor="middle">{escape(window["window"]["start"])}</text>'
            )
    for threshold in thresholds:
        level = y(threshold["learners"])
        parts.append(
            f'<line x1="{left}" y1="{level:.1f}" x2="{left + plot_w}" y2="{level:.1f}" '
            'stroke="#ef8f00" stroke-dasharray="5 4"/>'
            f'<text x="{left - 4}" y="{level + 4:.1f}" font-size="10" text-anchor="end">'
            f"{threshold['pct']}%</text>"
        )
    if limit:
        level = y(limit)
        parts.append(
            f'<line x1="{left}" y1="{level:.1f}" x2="{left + plot_w}" y2="{level:.1f}" '
            f'stroke="#c62828" stroke-width="2"/><text x="{left - 4}" y="{level - 6:.1f}" '
            f'font-size="10" text-anchor="end" fill="#c62828">limit</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def receipt_html(receipt: dict[str, Any]) -> str:
    if receipt.get("error"):
        return error_html(f"Refused: {receipt['error']}")
    verb = {"preview": "would delete", "physical": "deleted", "logical": "hid"}.get(
        receipt["mode"], "affected"
    )
    lines = [
        f"<b>{escape(receipt['mode'])}</b> {escape(receipt['request_id'])}: {verb} "
        f"{receipt['attempts_affected']:,} attempts of {receipt['learners_affected']:,} learners"
    ]
    for window in receipt.get("windows", []):
        lines.append(
            f"window {escape(window['start'])}: {window['active_before']:,} &rarr; "
            f"{window['active_after']:,}"
        )
    if not receipt.get("windows"):
        lines.append("no window's Active Learners change")
    return '<div class="result">' + "<br>".join(lines) + "</div>"


def error_html(message: str) -> str:
    return f'<div class="error">{escape(message)}</div>'


def waiting_html(answer: dict[str, Any]) -> str:
    return error_html(f"no receipt yet for {answer['request_id']}; it will come")


def confirm_form(
    preview: dict[str, Any],
    tenant_id: str,
    csrf: str,
    admin: bool,
    needs_force: bool,
    max_share: int,
) -> str:
    """The second step after a preview: delete exactly what it previewed (admins only)."""
    if preview.get("error") or preview["attempts_affected"] == 0:
        return ""
    if not admin:
        return '<p class="muted">Deleting for good needs an admin token.</p>'
    force = (
        f'<label class="warn"><input type="checkbox" name="force" value="yes"> this removes '
        f"more than {max_share} % of a window's Active Learners: delete anyway</label><br>"
        if needs_force
        else ""
    )
    return f"""
<form method="post" action="{escape(tenant_path(tenant_id, "/delete"))}" id="delete">
  {csrf_field(csrf)}
  <input type="hidden" name="preview_request_id" value="{escape(preview["request_id"])}">
  <input type="hidden" name="reason" value="{escape(preview.get("reason") or "")}">
  <b>Delete these {preview["attempts_affected"]:,} attempts for good</b> (physical; cannot be
  undone; within 15 minutes of the preview)<br>{force}
  type the tenant id to confirm: <input name="confirm" autocomplete="off">
  <button type="submit" class="warn">Delete</button>
</form>"""


def selector_text(selector: dict[str, Any] | None, timezone: str = "UTC") -> str:
    if not selector:
        return "\u2013"
    values = selector["values"]
    if selector["kind"] == "attempts":
        values = [f"{v['learner_id']}:{v['attempt_id']}" for v in values]
    if selector["kind"] == "older_than":
        # in the tenant's zone: the date typed into the dashboard, not the day before in UTC
        values = [when(local_instant(value, timezone)) for value in values]
    shown = ", ".join(str(v) for v in values[:5])
    more = f" and {len(values) - 5:,} more" if len(values) > 5 else ""
    return f"{selector['kind']}: {shown}{more}"


def local_instant(text: str, timezone: str) -> str:
    """An ISO instant as the same instant in a time zone (ISO, with that zone's offset); text
    that is no instant as it is (a receipt never makes the tenant's page fail)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.astimezone(ZoneInfo(timezone)).isoformat()
    except (ValueError, TypeError, OverflowError, AttributeError):
        return str(text)


def audit_table(receipts: list[dict[str, Any]], timezone: str = "UTC") -> str:
    """The deletion audit trail: who asked what, why, and what it did (newest first); cut-offs
    in the tenant's `timezone`."""
    if not receipts:
        return '<p class="muted">No deletion requests.</p>'
    rows = "".join(
        f"<tr><td>{escape(when(r.get('completed_at')))}</td><td>{escape(r['mode'])}</td>"
        f"<td>{escape(r.get('requested_by') or DASH)}</td>"
        f"<td>{escape(selector_text(r.get('selector'), timezone))}</td>"
        f"<td>{escape(r.get('reason') or '')}</td>"
        f'<td class="num">{r["attempts_affected"]:,}</td>'
        f'<td class="num">{r["learners_affected"]:,}</td>'
        f"<td>{escape(r.get('error') or 'ok')}</td></tr>"
        for r in receipts
    )
    return (
        '<table id="audit"><thead><tr><th>Completed</th><th>Mode</th><th>By</th><th>Selected</th>'
        "<th>Reason</th><th>Attempts</th><th>Learners</th><th>Result</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def tenant_page(
    details: dict[str, Any],
    windows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    receipts: list[dict[str, Any]],
    csrf: str,
    who: str | None = None,
    result: str = "",
    reports: dict[str, Any] | None = None,
    may_preview: bool = True,
    catching_up: bool = False,
) -> str:
    tenant = escape(details["tenant_id"])
    lic = details["license"]
    limit = lic["learner_limit"]
    pct = shown_utilization(details["active_learners"], limit)
    cards = (
        '<div class="grid">'
        f'<div class="card"><div class="muted">Active Learners</div><div class="big">'
        f"{details['active_learners']:,}</div></div>"
        f'<div class="card"><div class="muted">Total Learners</div><div class="big">'
        f"{details['total_learners']:,}</div></div>"
        f'<div class="card"><div class="muted">Licensed limit</div><div class="big">'
        f"{'&ndash;' if limit is None else f'{limit:,}'}</div></div>"
        f'<div class="card"><div class="muted">Utilization</div><div class="big" '
        f'style="color:{bar_color(pct)}">{"&ndash;" if pct is None else f"{pct:.1f} %"}</div></div>'
        "</div>"
    )
    window = details["window"]
    license_rows = [
        ("Licensed", "yes" if details["licensed"] else "no (default license)"),
        (
            "Active Learner Start Date",
            lic["cycle_start"] if details["licensed"] else "\u2013 (calendar years)",
        ),
        (
            "Active Window",
            f"{lic['window_months']} month{'' if lic['window_months'] == 1 else 's'} "
            f"(surcharge {lic['surcharge_pct']} %)",
        ),
        ("Current window", f"{window_days(window)} ({lic['timezone']})"),
        (
            "Thresholds",
            ", ".join(
                f"{t['pct']} % = {t['learners']:,}{REACHED if t['reached'] else ''}"
                for t in details["thresholds"]
            )
            or "\u2013",
        ),
        ("Notify", ", ".join(lic["notify"]) or "\u2013"),
        ("Updated", when(details["updated_at"])),
    ]
    license_table = (
        "<table>"
        + "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in license_rows
        )
        + "</table>"
    )
    event_rows = "".join(
        f"<tr><td>{escape(when(e['occurred_at']))}</td><td>{escape(e['window']['start'])}</td>"
        f"<td>{escape(e['direction'])}</td><td>{e['threshold_pct']} %</td>"
        f'<td class="num">{e["active_learners"]:,} / {e["learner_limit"]:,}</td></tr>'
        for e in reversed(events[-20:])
    )
    events_table = (
        "<table><thead><tr><th>When</th><th>Window</th><th>Direction</th><th>Threshold</th>"
        f"<th>Active / limit</th></tr></thead><tbody>{event_rows}</tbody></table>"
        if event_rows
        else '<p class="muted">No threshold events.</p>'
    )
    zone = escape(str(details["license"]["timezone"]))
    forms = f"""
<h2>Reduce Active Learners</h2>
{result}
<form method="post" action="{escape(tenant_path(details["tenant_id"], "/preview"))}" id="preview">
  {csrf_field(csrf)}
  <b>Preview a deletion</b> (nothing changes; then delete what it shows)<br>
  every attempt launched before <input type="date" name="older_than"> (midnight, {zone})
  or of these learners (one id a line, launched before now)<br>
  <textarea name="learner_ids" rows="3" cols="40"></textarea><br>
  or of the learners in these teams <textarea name="teams" rows="2" cols="20"></textarea>
  or learning roles <textarea name="roles" rows="2" cols="20"></textarea>
  (one a line, their attempts launched before now)<br>
  reason (kept in the audit trail): <input name="reason" size="40" maxlength="1000"><br>
  <button type="submit">Preview</button>
</form>"""
    if not may_preview:
        forms = (
            "<h2>Reduce Active Learners</h2>"
            '<p class="muted">Previews and deletions need an admin token.</p>'
        )
    body = (
        f"<h1>{tenant}</h1>{cards}<h2>License Key and Details</h2>{license_table}"
        f"<h2>Active Learners per window</h2><div class=card>"
        f"{window_chart(windows, limit, details['thresholds'])}</div>"
        f"{reports_html(reports, str(lic['timezone']))}"
        f"<h2>Threshold events</h2>{events_table}{forms}"
        f"<h2>Deletion audit trail</h2>{audit_table(receipts, str(lic['timezone']))}"
    )
    return page(details["tenant_id"], body, who, csrf, catching_up)


def signin_page(csrf: str, error: str = "") -> str:
    message = error_html(error) if error else ""
    body = (
        f"<h1>Sign in</h1>{message}"
        f'<form method="post" action="/signin">{csrf_field(csrf)}<label>API token '
        '<input type="password" name="token" autocomplete="off" autofocus></label> '
        '<button type="submit">Sign in</button></form>'
    )
    return page("Sign in", body)


# -- the reports on a tenant's page ---------------------------------------------------------------


def growth_chart(forecast: dict[str, Any]) -> str:
    """The current window's count at the end of each day (line), its linear projection to the
    window's end (dashed) and the limit (red line)."""
    daily = forecast["daily"]
    limit = forecast.get("learner_limit")
    width, height, left, bottom, top = 760, 220, 48, 30, 14
    plot_w, plot_h = width - left - 12, height - bottom - top
    days_total = max(
        (
            date.fromisoformat(forecast["window"]["end"])
            - date.fromisoformat(forecast["window"]["start"])
        ).days,
        1,
    )
    projected = forecast["projected_at_window_end"]
    peak = max([d["active_learners"] for d in daily] + [projected, limit or 0, 1]) * 1.1

    def x(day_index: float) -> float:
        return left + plot_w * day_index / days_total

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / peak

    points = " ".join(f"{x(i + 1):.1f},{y(d['active_learners']):.1f}" for i, d in enumerate(daily))
    parts = [
        f'<svg width="{width}" height="{height}" role="img" id="growth" '
        'aria-label="Active Learners of the current window, day by day, and the forecast">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#e6e8ee"/>',
        f'<polyline class="daily" points="{x(0):.1f},{y(0):.1f} {points}" fill="none" '
        'stroke="#3f6fb5" stroke-width="2"/>',
    ]
    if daily:
        last = daily[-1]["active_learners"]
        parts.append(
            f'<line class="projection" x1="{x(len(daily)):.1f}" y1="{y(last):.1f}" '
            f'x2="{x(days_total):.1f}" y2="{y(projected):.1f}" stroke="#3f6fb5" '
            'stroke-dasharray="6 4"/>'
        )
    if limit:
        parts.append(
            f'<line x1="{left}" y1="{y(limit):.1f}" x2="{left + plot_w}" y2="{y(limit):.1f}" '
            f'stroke="#c62828" stroke-width="2"/><text x="{left - 4}" y="{y(limit) + 4:.1f}" '
            f'font-size="10" text-anchor="end" fill="#c62828">limit</text>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 10}" font-size="10">{escape(forecast["window"]["start"])}'
        f'</text><text x="{left + plot_w}" y="{height - 10}" font-size="10" text-anchor="end">'
        f"{escape(last_day(forecast['window']))}</text></svg>"  # the right edge: its day's end
    )
    reached = forecast.get("limit_reached_on")
    note = (
        f"projected at the window's end: <b>{projected:,}</b>"
        + (f"; the limit is reached on <b>{escape(reached)}</b>" if reached else "")
        + f'<br><span class="muted">{escape(forecast["method"])}</span>'
    )
    return "".join(parts) + f"<p>{note}</p>"


def advisor_table(advisor: dict[str, Any], timezone: str) -> str:
    """What an `older_than` deletion at each month start would leave (nothing is changed)."""
    best = advisor.get("smallest_under_limit")
    rows = "".join(
        f"<tr{' class=best' if o['older_than'] == best else ''}>"
        f"<td>{escape(o['older_than'][:10])}</td>"
        f'<td class="num">{o["active_learners_after"]:,}</td>'
        f'<td class="num">{o["attempts_removed"]:,}</td>'
        f"<td>{BEST if o['older_than'] == best else ''}</td></tr>"
        for o in advisor["options"]
    )
    under = under_the_limit(advisor.get("active_learners"), advisor.get("learner_limit"))
    caption = f"<caption>{UNDER_THE_LIMIT}</caption>" if under else ""
    return (
        f'<table id="advisor">{caption}<thead><tr><th>Delete attempts before (midnight, '
        f"{escape(timezone)})</th><th>Active Learners after</th><th>Attempts removed</th>"
        f"<th></th></tr></thead><tbody>{rows}</tbody></table>"
    )


def groups_table(groups: dict[str, Any]) -> str:
    rows = [("team", g["id"], g["active_learners"]) for g in groups["teams"]]
    rows += [("role", g["id"], g["active_learners"]) for g in groups["roles"]]
    body = "".join(
        f'<tr><td>{kind}</td><td>{escape(name)}</td><td class="num">{count:,}</td></tr>'
        for kind, name, count in rows
    )
    body += (
        f'<tr><td>\u2013</td><td>in no team</td><td class="num">{groups["unassigned"]:,}</td></tr>'
    )
    return (
        '<table id="groups"><thead><tr><th>Kind</th><th>Team or learning role</th>'
        f"<th>Active Learners</th></tr></thead><tbody>{body}</tbody></table>"
    )


def learners_table(rows: list[dict[str, Any]], total: int, csv_href: str) -> str:
    body = "".join(
        f"<tr><td>{escape(r['learner_id'])}</td><td>{escape(when(r['first_attempt_at']))}</td>"
        f"<td>{escape(when(r['last_attempt_at']))}</td>"
        f'<td class="num">{r["attempts"]:,}</td><td>{escape(", ".join(r["teams"]))}</td>'
        f"<td>{escape(', '.join(r['roles']))}</td></tr>"
        for r in rows
    )
    return (
        f"<p>The first {len(rows):,} of {total:,} counted learners, by id. "
        f'<a id="learners-csv" href="{escape(csv_href)}">Download all as CSV</a></p>'
        '<table id="learners"><thead><tr><th>Learner</th><th>First attempt</th>'
        "<th>Last attempt</th><th>Attempts</th><th>Teams</th><th>Roles</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def reports_html(reports: dict[str, Any] | None, timezone: str) -> str:
    """The current window's growth and forecast, the advisor, teams and roles, and the first
    page of counted learners; or why they are missing (a rebalance moves partitions)."""
    if reports is None:
        return ""
    if "error" in reports:
        return f"<h2>Reports</h2>{error_html(reports['error'])}"
    return (
        f"<h2>This window, day by day</h2><div class=card>{growth_chart(reports['forecast'])}"
        "</div><h2>Reduction advisor</h2>"
        '<p class="muted">What a physical deletion of every attempt launched before each date '
        "would leave in the current window. Nothing is changed here.</p>"
        f"{advisor_table(reports['advisor'], timezone)}"
        f"<h2>Teams and learning roles</h2>{groups_table(reports['groups'])}"
        "<h2>Counted learners</h2>"
        f"{learners_table(reports['learners'], reports['total'], reports['csv_href'])}"
    )
