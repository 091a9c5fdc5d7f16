"""Which stage partitions this process owns, under which epochs, and where its next records
should land: what a batch checks before it writes and what finds a deposed owner's records."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streams.stages.store import (
    FENCED_OUTPUTS,
    Epoch,
    Log,
    LogRecord,
    TopicPartition,
    fenced_topics,
)


class Ownership:
    """The stage partitions this process owns, their epochs, and the lineage of its writes.

    Shared by every batch of the process. `expected[tp]` is the offset at which this owner's
    next record in a changelog or fenced output partition should land; a record it finds
    between that offset and its own next one was written by somebody else.
    """

    def __init__(self) -> None:
        self.epochs: dict[tuple[str, int], Epoch] = {}
        self.expected: dict[TopicPartition, int] = {}
        # the offset of the first deposed owner's record in a fenced output partition whose
        # answer is not durable yet, an entry per batch that found some (`answered` drops the
        # batch's own): where the next owner's lineage must start at the latest
        # (`keys.OUTPUTS_FROM`)
        self.unanswered: dict[TopicPartition, list[int]] = {}
        self.zombies_repaired = 0

    def epoch_of(self, stage: str, partition: int) -> Epoch:
        try:
            return self.epochs[(stage, partition)]
        except KeyError:
            raise RuntimeError(f"{stage} partition {partition} is written but not owned") from None

    def owns(self, stage: str, partition: int) -> bool:
        return (stage, partition) in self.epochs

    async def start_at_end(
        self, stage: str, partition: int, log: Log, check: Callable[[], None] | None = None
    ) -> None:
        """This owner's records in the partition's changelogs and fenced outputs follow what
        is in them now (a takeover reads them before it chooses its epoch). `check` runs after
        the reads and before the lineage moves (a stale takeover stops there)."""
        ends = {topic: await log.end_offset(topic, partition) for topic in fenced_topics(stage)}
        if check is not None:
            check()
        for topic, end in ends.items():
            self.expected[(topic, partition)] = end

    def claim(self, stage: str, partition: int, epoch: Epoch) -> None:
        """Own a partition under `epoch` (`streams/stages/batch.py` `take_over`)."""
        self.epochs[(stage, partition)] = epoch

    def start_lineage(self, tp: TopicPartition, offset: int) -> None:
        """This owner's records in `tp` follow `offset` (the end of what it restored), if that
        comes before the end offset read at the takeover."""
        if offset < self.expected.get(tp, offset + 1):
            self.expected[tp] = offset

    def release(self, stage: str, partitions: Sequence[int] | None = None) -> None:
        """Forget partitions of `stage` (all of them when `partitions` is None)."""
        gone = {
            p for (s, p) in self.epochs if s == stage and (partitions is None or p in partitions)
        }
        for partition in gone:
            del self.epochs[(stage, partition)]
            for topic in fenced_topics(stage):
                self.expected.pop((topic, partition), None)
                self.unanswered.pop((topic, partition), None)

    def found_zombies(self, tp: TopicPartition, records: Sequence[LogRecord]) -> int:
        """A deposed owner's records in a fenced output partition, to be answered: the offset
        of the first, unanswered until `answered`."""
        first = min(record.offset for record in records)
        self.unanswered.setdefault(tp, []).append(first)
        return first

    def answered(self, tp: TopicPartition, first: int) -> None:
        """The answers to the records from `first` on (`found_zombies`) are durable, or their
        finder moved its lineage back before them (it reads and answers them again)."""
        offsets = self.unanswered.get(tp)
        if offsets is not None and first in offsets:
            offsets.remove(first)
            if not offsets:
                del self.unanswered[tp]

    def outputs_from(self, partition: int) -> dict[str, int]:
        """Where a tenant partition's next owner starts reading each fenced output: nothing
        before it is unread or unanswered (`keys.OUTPUTS_FROM`)."""
        stands = {}
        for topic in sorted(FENCED_OUTPUTS):
            tp = (topic, partition)
            if tp in self.expected:
                stands[topic] = min([self.expected[tp], *self.unanswered.get(tp, [])])
        return stands

    def partitions(self, stage: str) -> list[int]:
        return sorted(p for (s, p) in self.epochs if s == stage)
