"""The threshold e-mail notifier: its own process, reading threshold events."""
