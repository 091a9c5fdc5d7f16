"""Print a fresh Kafka cluster id for `kafka-storage format -t`.

A cluster id is a base64url UUID without padding. One id in 64 starts with "-", and the
storage tool's argument parser reads such a value as an option ("argument --cluster-id/-t:
expected one argument"); a CI run failed so. Kafka's own Uuid.randomUuid draws again in
that case, and so does this.
"""

import base64
import os
from collections.abc import Callable


def new_cluster_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


if __name__ == "__main__":
    print(new_cluster_id())
