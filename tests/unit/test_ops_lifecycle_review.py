"""The state folder across the operators' life cycle (helper-91's review).

faust keeps every table partition in `STATE_DIR/v1/tables/<table>-<partition>.db`, whatever
the TOPIC_PREFIX: the folder does not say which deployment's changelogs its rows and stored
offsets belong to. A folder whose stored offset lies past the end of the changelog it is
restored from (topics deleted and made again, a fresh TOPIC_PREFIX on the same STATE_DIR, a
changelog partition Kafka truncated) holds rows no record of that changelog wrote.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import rocksdict
from faust.types import TP

from streams.stages import keys
from streams.stages.store import epoch_header
from streams.worker.recovery import BulkRecovery
from streams.worker.state import OFFSET_KEY


def _restore(db: rocksdict.Rdict, highwaters: dict[TP, int]) -> BulkRecovery:
    class Restore(BulkRecovery):
        def __init__(self) -> None:  # the decision and the write path: no app, no consumer
            self.active_highwaters = highwaters

        def _db(self, tp: TP) -> rocksdict.Rdict:
            return db

        async def _restore(self, todo: dict[TP, int], offsets: dict[TP, int | None]) -> None:
            self.todo = dict(todo)
            self.read_from = {tp: offsets[tp] for tp in todo}

    return Restore()


@pytest.mark.parametrize("highwater", [-1, 0, 4])
def test_a_stored_offset_past_the_changelogs_end_restores_from_the_start(
    tmp_path: Path, highwater: int
) -> None:
    """A folder that stored offset 9 of a changelog that now ends at `highwater` (-1: empty)
    holds another changelog's rows, with its fence: kept, its attempts were counted on top of
    the deployment's (and its fence turned the deployment's own records into a deposed owner's),
    or faust's consistency check stopped the worker at every start (an offset of 0 passed even
    that check). It is restored from the changelog's start, as a wiped folder is."""
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    tp = TP("attempts", 0)
    db.put(b"old/learner/attempt", b"{}")
    db.put(keys.FENCE, epoch_header((40, 90))[0][1])
    db.put(OFFSET_KEY, b"9")
    offsets: dict[TP, int | None] = {tp: 9}
    restore = _restore(db, {tp: highwater})
    asyncio.run(restore.bulk_restore({tp}, offsets))
    kept = dict(db.items())
    db.close()
    assert kept == {}
    if highwater >= 0:
        assert restore.todo == {tp: highwater} and restore.read_from == {tp: -1}
    # faust's own check and seek take -1 for "nothing read" (None is no offset to seek to)
    assert offsets[tp] == -1


def test_a_stored_offset_within_the_changelog_reads_on_from_it(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    tp = TP("attempts", 0)
    db.put(b"t/learner/attempt", b"{}")
    db.put(OFFSET_KEY, b"9")
    offsets: dict[TP, int | None] = {tp: 9}
    restore = _restore(db, {tp: 12})
    asyncio.run(restore.bulk_restore({tp}, offsets))
    kept = dict(db.items())
    db.close()
    assert kept[b"t/learner/attempt"] == b"{}"
    assert restore.todo == {tp: 12} and restore.read_from == {tp: 9}
