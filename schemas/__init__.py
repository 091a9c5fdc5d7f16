"""The wire contract of active-learners as pydantic v2 models, one module per topic family.

Inputs (`launches`, `licenses`, `attempt-deletions`) ignore unknown fields and validate strictly;
outputs describe exactly what the service writes. `schemas/json/` holds the JSON Schema of every
topic, generated from these models by `make schemas` (a unit test fails when they drift).
"""
