"""Kafka helpers for the command line, the tools and the worker: topic administration,
plain producers and consumers (kafka-python), waiting for the pipeline to settle."""
