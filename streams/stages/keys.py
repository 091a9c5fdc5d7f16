"""Every key the stages store, in one place, each kind in a namespace of its own.

Inputs are data, never keys. Every id is put into a key after a fixed kind tag ("m/", "lic/", ...),
and ids contain neither '/' nor a control character (the contract), so no id, however odd,
can produce another kind's key, a meta key (they start with '#') or the store's own bookkeeping
(faust's changelog-offset key `__faust\\x00offset__` has no '/').

The `attempts` table is the one exception: its keys are the keys of the contract's compacted
`attempts` topic (its changelog), `{tenant}/{learner}/{attempt}`, and it holds nothing else
but local bookkeeping no input can produce (the fence, a restore's repair marks).

Tables and their keys (all of a key's data lives in one partition):

learner stage, partitioned like learner-commands (one partition per tenant/learner)
  attempts        {tenant}/{learner}/{attempt}           the attempt record
  learner-state   lic/{tenant}                           the license this partition applied
                  m/{tenant}/{learner}                   the learner's windows: {start: summary}
                  #epoch                                 [counter, generation] of the owner
  (every table)   \x00repair/{key}                       local only: a key to write again
  learner-groups  g/{tenant}/{learner}                   {teams, roles}
  erasures        x/{tenant}/a/{learner}/{attempt}       erased attempt: launches before it (for
                                                         good once a deletion removed it)
                  x/{tenant}/l/{learner}                 learner cut-off instant
                  x/{tenant}/t                           tenant cut-off instant
                  x/{tenant}/h/{learner}/{attempt}       the same three for logical deletions:
                  x/{tenant}/hl/{learner}                launches they cover are stored
                  x/{tenant}/ht                          logically deleted
                  x/{tenant}/k/{learner}/{attempt}       launches once rejected as conflicts
                  done/{tenant}/{request}/{part}         a deletion part's outcome (for good:
                                                         a redelivery reports it, acts on it)
                  dm/{tenant}/{request}/{part}/{n}       its selected learners, chunk n (a
                                                         physical or logical part's only)

tenant stage, partitioned like tenant-commands (one partition per tenant)
  tenant-state    lic/{tenant}                           {"license": {...} | None}
                  parts/{tenant}/{learner partition}     that partition's latest partial count
                                                         (`parts/{tenant}`: all partitions in one
                                                         record, an older version's)
                  pub/{tenant}                           what was published
                  thr/{tenant}/{window start}            a window's threshold state and last
                                                         events (`thr/{tenant}`: all windows in
                                                         one record, an older version's)
                  thrn/{tenant}/{name}                   a `notify` list those events name
                                                         (by a hash of it: never changed)
                  thrp/{tenant}/{start}/{pct}/{n}        an event not yet confirmed sent
                  del/{tenant}/{request}                 a deletion request and its receipt
                  delr/{tenant}/{request}/{part}         a part's report, until the receipt
                  delc/{tenant}/{request}/{fingerprint}  the error receipt of another request
                                                         under that id (`conflicts` in the
                                                         request's record: an older version's)
                  open/{tenant}                          physical deletions not yet complete
                                                         ({request: since}): they hold the
                                                         tenant's thresholds
                  #epoch                                 [counter, generation] of the owner
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

ATTEMPTS = "attempts"
LEARNER_STATE = "learner-state"
LEARNER_GROUPS = "learner-groups"
ERASURES = "erasures"
TENANT_STATE = "tenant-state"

LEARNER_TABLES = (ATTEMPTS, LEARNER_STATE, LEARNER_GROUPS, ERASURES)
TENANT_TABLES = (TENANT_STATE,)

# Meta keys: never produced from an input (no id starts a key, every kind tag has a '/').
EPOCH = b"#epoch"  # learner-state and tenant-state: the owner's epoch (in the changelog)
FENCE = b"#fence"  # every table partition, local only: the highest epoch applied to it
# tenant-state, in the changelog: {"epoch": the owner's, "from": {fenced output topic: offset}}
# of the partition, where the lineage of the owner's outputs stood at its flush (everything
# before it read and answered); the next owner's lineage starts there
OUTPUTS_FROM = b"#outputs"
# Every table partition, local only: REPAIR + key marks a key whose last changelog record a
# restore skipped (a deposed owner's); the owner writes the key again, then drops the mark.
# The mark wraps an input-derived key, so it cannot be a '#' meta key without a '/' (a tenant
# "#repair" has attempt keys "#repair/..."): it starts with a control character, which no id
# and no kind tag contains.
REPAIR = b"\x00repair/"


def _join(*parts: str) -> bytes:
    return "/".join(parts).encode()


def _request(request_id: str) -> str:
    """A request id as one key component: request ids may contain '/' and control characters
    (entity ids may not), so they are percent-encoded; the encoding is one-to-one."""
    return quote(request_id, safe="")


# -- attempts -------------------------------------------------------------------------------
def attempt(tenant_id: str, learner_id: str, attempt_id: str) -> bytes:
    return _join(tenant_id, learner_id, attempt_id)


def attempts_of_learner(tenant_id: str, learner_id: str) -> bytes:
    return _join(tenant_id, learner_id, "")


def attempts_of_tenant(tenant_id: str) -> bytes:
    return _join(tenant_id, "")


def learner_of_attempt(key: bytes) -> bytes:
    """`{tenant}/{learner}` of an attempt key: the group of one learner's attempts."""
    tenant, _, rest = key.partition(b"/")
    learner, _, _ = rest.partition(b"/")
    return tenant + b"/" + learner


def parse_attempt(key: bytes) -> tuple[str, str, str]:
    tenant, learner, attempt_id = key.decode().split("/", 2)
    return tenant, learner, attempt_id


# -- learner-state --------------------------------------------------------------------------
LICENSE = b"lic/"
MEMBERSHIP = b"m/"


def license_entry(tenant_id: str) -> bytes:
    return _join("lic", tenant_id)


def tenant_of_license_entry(key: bytes) -> str:
    return key[len(LICENSE) :].decode()


def membership(tenant_id: str, learner_id: str) -> bytes:
    return _join("m", tenant_id, learner_id)


def memberships_of(tenant_id: str) -> bytes:
    return _join("m", tenant_id, "")


def parse_membership(key: bytes) -> tuple[str, str]:
    _, tenant, learner = key.decode().split("/", 2)
    return tenant, learner


# -- learner-groups -------------------------------------------------------------------------
def groups(tenant_id: str, learner_id: str) -> bytes:
    return _join("g", tenant_id, learner_id)


def groups_of(tenant_id: str) -> bytes:
    return _join("g", tenant_id, "")


# -- erasures -------------------------------------------------------------------------------
def erasures_of(tenant_id: str) -> bytes:
    """The prefix of every erasure marker of a tenant (one seek tells whether it has any)."""
    return _join("x", tenant_id, "")


def attempt_marker(tenant_id: str, learner_id: str, attempt_id: str) -> bytes:
    return _join("x", tenant_id, "a", learner_id, attempt_id)


def attempt_markers_of(tenant_id: str) -> Callable[[bytes], bytes]:
    """`attempt_marker` of the attempt whose `attempt` key this is, for one tenant's keys (no
    decoding, the prefixes computed once: a deletion marks hundreds of thousands of attempts)."""
    tenant = tenant_id.encode()
    head, skip = b"x/" + tenant + b"/a/", len(tenant) + 1
    return lambda attempt_key: head + attempt_key[skip:]


def learner_cutoff(tenant_id: str, learner_id: str) -> bytes:
    return _join("x", tenant_id, "l", learner_id)


def tenant_cutoff(tenant_id: str) -> bytes:
    return _join("x", tenant_id, "t")


def attempt_hidden(tenant_id: str, learner_id: str, attempt_id: str) -> bytes:
    return _join("x", tenant_id, "h", learner_id, attempt_id)


def learner_hidden(tenant_id: str, learner_id: str) -> bytes:
    return _join("x", tenant_id, "hl", learner_id)


def tenant_hidden(tenant_id: str) -> bytes:
    return _join("x", tenant_id, "ht")


def conflicts(tenant_id: str, learner_id: str, attempt_id: str) -> bytes:
    return _join("x", tenant_id, "k", learner_id, attempt_id)


def part_done(tenant_id: str, request_id: str, part: int) -> bytes:
    return _join("done", tenant_id, _request(request_id), str(part))


def part_members(tenant_id: str, request_id: str, part: int) -> bytes:
    """The prefix of a part's member chunks (`.../{n:06d}`)."""
    return _join("dm", tenant_id, _request(request_id), str(part), "")


def part_members_chunk(tenant_id: str, request_id: str, part: int, chunk: int) -> bytes:
    return _join("dm", tenant_id, _request(request_id), str(part), f"{chunk:06d}")


# -- tenant-state ---------------------------------------------------------------------------
PUBLISHED = b"pub/"
PARTIALS = b"parts/"
DELETION_REPORTS = b"delr/"


def tenant_license(tenant_id: str) -> bytes:
    return _join("lic", tenant_id)


def partial(tenant_id: str, learner_partition: str) -> bytes:
    """One learner partition's latest partial count of a tenant: one key per partition, since
    a tenant's partials together grow with the partitions and windows (600 partitions of ten
    years of monthly windows passed 1 MiB in one record)."""
    return PARTIALS + _join(tenant_id, learner_partition)


def partials_of(tenant_id: str) -> bytes:
    """The prefix of a tenant's `partial` keys."""
    return PARTIALS + _join(tenant_id, "")


def learner_partition_of_partial(key: bytes) -> str:
    return key.rsplit(b"/", 1)[1].decode()


def legacy_partials(tenant_id: str) -> bytes:
    """An older version's one record of a tenant's partials ({learner partition: partial}):
    read with the per-partition keys, split into them at the tenant's next partial count."""
    return PARTIALS + _join(tenant_id)


def published(tenant_id: str) -> bytes:
    return _join("pub", tenant_id)


def tenant_of_published(key: bytes) -> str:
    return key[len(PUBLISHED) :].decode()


def thresholds(tenant_id: str) -> bytes:
    """An older version's one threshold record of a tenant (split on first use)."""
    return _join("thr", tenant_id)


def window_thresholds(tenant_id: str, start: str) -> bytes:
    return _join("thr", tenant_id, start)


def threshold_notify(tenant_id: str, name: str) -> bytes:
    """A `notify` list that a window's threshold events name (`notify_name`)."""
    return _join("thrn", tenant_id, name)


def pending_threshold_event(tenant_id: str, start: str, pct: int, crossing: int) -> bytes:
    """An event not yet confirmed sent; in the order of its window, threshold and crossing."""
    return _join("thrp", tenant_id, start, f"{pct:04d}", f"{crossing:010d}")


def pending_threshold_events(tenant_id: str, start: str, pct: int) -> bytes:
    """The prefix of a window threshold's `thrp/` keys, in the order of their crossings."""
    return _join("thrp", tenant_id, start, f"{pct:04d}", "")


def thresholds_key_parts(key: bytes) -> tuple[str, str | None]:
    """(tenant, window start) of a `thr/` key; the start is None for an older version's one
    record of a tenant."""
    tenant_id, _, start = key[len(THRESHOLDS) :].decode().partition("/")
    return tenant_id, start or None


def pending_event_parts(key: bytes) -> tuple[str, str, int, int]:
    """(tenant, window start, threshold pct, crossing number) of a `thrp/` key."""
    tenant_id, start, pct, crossing = key[len(PENDING_THRESHOLD_EVENTS) :].decode().split("/")
    return tenant_id, start, int(pct), int(crossing)


def deletion(tenant_id: str, request_id: str) -> bytes:
    return _join("del", tenant_id, _request(request_id))


def deletion_report(tenant_id: str, request_id: str, part: int) -> bytes:
    """One part's report of a deletion request, kept until the request's receipt: a record
    per report, since a request's reports together grow with the learner partitions (600
    partitions of ten years of monthly windows passed 1 MiB in the request's record)."""
    return DELETION_REPORTS + _join(tenant_id, _request(request_id), str(part))


def deletion_reports(tenant_id: str, request_id: str) -> bytes:
    """The prefix of a request's `deletion_report` keys."""
    return DELETION_REPORTS + _join(tenant_id, _request(request_id), "")


def part_of_deletion_report(key: bytes) -> str:
    return key.rsplit(b"/", 1)[1].decode()


def deletion_conflict(tenant_id: str, request_id: str, fingerprint: str) -> bytes:
    """The error receipt of another request under a used request id (`fingerprint`, 32 hex
    digits, names it): a record per request, so that any number of them, of any size, are
    answered the same at every redelivery."""
    return DELETION_CONFLICTS + _join(tenant_id, _request(request_id), fingerprint)


def deletion_conflicts(tenant_id: str, request_id: str) -> bytes:
    """The prefix of a request id's `deletion_conflict` keys."""
    return DELETION_CONFLICTS + _join(tenant_id, _request(request_id), "")


def open_deletions(tenant_id: str) -> bytes:
    return _join("open", tenant_id)


def threshold_notify_name(key: bytes) -> str:
    """The name of a `thrn/` key's list (what `notify_name` gives for its value)."""
    return key[len(THRESHOLD_NOTIFY) :].decode().partition("/")[2]


DELETION_CONFLICTS = b"delc/"
DELETIONS = b"del/"
OPEN_DELETIONS = b"open/"
THRESHOLDS = b"thr/"
THRESHOLD_NOTIFY = b"thrn/"
PENDING_THRESHOLD_EVENTS = b"thrp/"  # scanned at every tick: apart from the window records


# -- the order of a flush's records in a changelog ---------------------------------------------
def _tenant_state_rank(key: bytes, value: bytes | None) -> int:
    """A crash may land only the first records of a changelog send, so what other records name
    goes first: `notify` lists and events not yet confirmed sent (they depend on nothing), then
    the rest in the order of their first write, and an older version's one threshold record of
    a tenant (`thr/{tenant}`) after them, as its deletion must not land before the window records
    split from it (its one partials record, `parts/{tenant}`, likewise). (A window record moved
    behind every write of its batch lost them when the deletion landed alone; kept in its
    place, a later event of its batch behind it was lost:
    tests/stages/test_threshold_lists_review.py.) The deletion of an event confirmed sent goes
    last of all: a tick that forgets events moves the window record a crash left behind them
    past them in the same flush, and the deletions landing without that record lost the
    events' crossing numbers for good (tests/stages/test_threshold_crash_review.py). A deletion
    part's report goes first as well, as the request's record names it, and its deletion
    last, as the record that holds the receipt made from it must land before it.

    A request's record (`del/`) and the tenant's open deletions (`open/`) go after every
    other record of the flush, the hold last: a receipt that landed means its last part's
    count landed too (a replay evaluates thresholds once the request is complete, and on a
    count from the middle of the deletion it mailed a `down` and an `up` that the first try
    never did), and a hold released means the request is complete (released ahead of its
    receipt, a replay evaluated while the request was still open). Both found by helper-74
    (tests/stages/test_deletion_thresholds.py)."""
    if key.startswith((PENDING_THRESHOLD_EVENTS, DELETION_REPORTS)) and value is None:
        return 5
    if key.startswith((THRESHOLD_NOTIFY, PENDING_THRESHOLD_EVENTS, DELETION_REPORTS)):
        return 0
    if key == OUTPUTS_FROM:  # before a takeover's epoch (streams/stages/batch.py `_outputs_from`)
        return 0
    if key.startswith((THRESHOLDS, PARTIALS)) and key.count(b"/") == 1:
        return 4
    if key.startswith(DELETIONS):
        return 2
    if key.startswith(OPEN_DELETIONS):
        return 3
    return 1


# table -> the rank of a record (its key, and its value or None for a deletion) in a flush's
# changelog records (stable: the first-write order within a rank); a table not named here
# sends them in the order of their first write
CHANGELOG_ORDER = {TENANT_STATE: _tenant_state_rank}


# -- outputs --------------------------------------------------------------------------------
def count_record(tenant_id: str, window_start: str) -> bytes:
    """The key of an `active-learner-counts` record."""
    return _join(tenant_id, window_start)
