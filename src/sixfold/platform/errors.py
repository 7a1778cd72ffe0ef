"""Errors shared by every adapter: each names the service and says what to do."""

from __future__ import annotations


class ServiceUnavailable(RuntimeError):
    """A backing service (Kafka, Cassandra, ...) cannot be reached or stopped answering."""

    def __init__(self, service: str, where: str, detail: str, fix: str = "") -> None:
        self.service = service
        self.where = where
        hint = fix or "start it with `sixfold services up` or point the SIXFOLD_* setting at a running one"
        super().__init__(f"{service} at {where} is unavailable: {detail}; {hint}")
