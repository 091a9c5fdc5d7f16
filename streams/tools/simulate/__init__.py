"""A deterministic simulator of Kafka, workers and crashes, running the real stages.

`active-learners simulate --seeds N --seed S` (make simulate) runs N seeded schedules; each
schedule produces input, runs 1-3 worker processes of the real stages over in-memory state and
a simulated Kafka, injects faults (crashes at any point of a flush, lost state folders,
rebalances, deposed owners whose writes land late, Kafka refusing writes, duplicated input),
lets everything settle, and checks the outcome against an independent sequential model.
A failing seed prints itself and a shrunk trace; `--seed S --trace` replays it.

  world.py     simulated Kafka (logs, consumer groups, commits) and worker processes
  workload.py  seeded input: licenses, launches, deletions, learner groups, garbage
  oracle.py    the independent model and every check
  runner.py    schedules, faults, settling, shrinking, the command line
"""
