"""What the stand-in runner raises when GitHub would refuse a workflow or an invocation."""

from __future__ import annotations


class WorkflowError(Exception):
    """The workflow (or the way it was invoked) is something GitHub would refuse."""


class NotTriggered(WorkflowError):
    """The event does not match the workflow's `on:` triggers; GitHub would not run it."""


class ExpressionError(WorkflowError):
    """A `${{ }}` expression GitHub would reject (unknown context, bad syntax, ...)."""
