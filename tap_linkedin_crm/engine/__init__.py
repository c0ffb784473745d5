"""The export engine: one run of every export kind, scheduled, downloaded and checkpointed."""
