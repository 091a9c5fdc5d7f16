"""The `active-learners` command line."""
