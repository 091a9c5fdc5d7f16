"""The stages as objects over a Store: decode -> read -> domain rules -> write and emit.

Nothing in this package imports faust or aiokafka (tests/unit/test_layers.py holds the line). A
stage reads and writes through a `Batch` (streams/stages/store.py); the same code runs in the
worker over RocksDB and Kafka, in unit tests over memory, and in the deterministic simulator
(streams/tools/simulate/) over a simulated Kafka with crashes.
"""
