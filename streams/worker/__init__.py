"""The worker process: the faust app and everything that runs inside it.

`app` builds the faust App, `channels`/`tables` declare its topics and tables, `agents` run the
stages of streams/stages over them, `state` and `recovery` are the RocksDB and Kafka side of the
stages' Store, `process` is the faust Worker that `active-learners worker` runs."""
