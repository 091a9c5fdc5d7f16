"""The worker process: the only code that knows faust and aiokafka.

`app` builds the faust App, `channels`/`tables` declare its topics and tables, `agents` run the
stages of streams/stages over them, `state` and `recovery` are the RocksDB and Kafka side of the
stages' Store, `process` is the faust Worker that `active-learners worker` runs."""
