# The C router's signature (streams/stages/_router.c).
from collections.abc import Callable, Sequence
from typing import Any

def route(
    records: Sequence[Any],
    partitions: int,
    raw_inline_max: int,
    command_max_bytes: int,
    prefix: bytes,
    suffix: bytes,
    slow: Callable[[Any], list[tuple[int, bytes, int]]],
    /,
) -> tuple[list[tuple[int, bytes]], int, int]: ...
