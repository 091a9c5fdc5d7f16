"""Settings of every process: environment variables, Kafka security, logging.

The lowest layer of the service itself: it imports nothing of the project."""
