"""faust's Kafka transport, with a consumer that reads committed records only.

A producer that writes in transactions (Kafka Streams with exactly-once, a transactional
outbox) may abort one: its records stay in the log, marked aborted, and a consumer with Kafka's
default isolation (`read_uncommitted`) reads them as any other. Launches of an aborted
transaction counted would bill learners for launches the LMS rolled back; an aborted license
would cut the windows; an aborted deletion would delete. So every reader of an input topic reads
`read_committed`: the launch reader, the read model, the notifier, the CLI. faust chooses
`read_committed` only for its own transactions (`processing_guarantee="exactly_once"`, which the
service does not use), so its consumer is given the setting here. Records of producers without
transactions are read as before: for them the last stable offset is the end of the log.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

ISOLATION_LEVEL = "read_committed"


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust passes no isolation level of its choosing; aiokafka hands this attribute to
        # its fetcher when the consumer starts (tests/integration/test_transactions.py
        # fails if a new aiokafka stops reading it)
        consumer._isolation_level = ISOLATION_LEVEL
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = _Consumer
