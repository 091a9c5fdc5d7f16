"""Pure logic of the service: windows, the tracking rule, learner and tenant transitions.

Nothing here imports faust or kafka, and nothing reads the clock: `now` is always a parameter.
"""
