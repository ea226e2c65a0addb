"""A LOCAL STAND-IN for GitHub's Actions runner, for tests only.

GitHub cannot run here, yet releasectl's workflows must be proven by running
them. This module runs one workflow's jobs for real on this machine: `run:`
steps are real shell processes in a real git checkout of a bare repository that
stands in for the GitHub repository. Only what cannot run here is mocked:
`uses:` actions resolve to Python stand-ins (`actions/checkout` clones the bare
remote, `actions/setup-python` records the version) or to callables the test
passes in; anything else fails its step with a clear message.

Where it differs from GitHub it errs on the strict side, so that a workflow
that passes here is not one that fails there for a reason we could have seen:
- processes a step leaves behind are killed when the step ends (GitHub keeps
  them until the job ends), so steps cannot lean on a background server;
- an expression naming a context GitHub does not offer at that place, or an
  unknown function, raises `ExpressionError` naming the expression;
- `${{ }}` that fails to evaluate raises instead of failing the step.
Jobs run one after another in `needs:` order. Not supported (raises
`WorkflowError`): matrix, services, container, reusable workflows; `hashFiles()`.
Network: git may use only local repositories, and HTTP(S) proxies point at a
closed port on 127.0.0.1 (`no_proxy` lets 127.0.0.1/localhost through). This is
a guard for well-behaved clients, not a sandbox.
"""

from testing.gha.actions import BUILTIN_ACTIONS, StepContext, checkout, setup_python
from testing.gha.errors import ExpressionError, NotTriggered, WorkflowError
from testing.gha.expressions import Scope, evaluate, to_str, truthy
from testing.gha.files import load_workflow, parse_file_command
from testing.gha.results import JobResult, RunResult, StepResult, UsesRef, is_pinned
from testing.gha.runner import run_workflow
from testing.gha.triggers import Event, check_trigger, triggered

__all__ = [
    "BUILTIN_ACTIONS",
    "Event",
    "ExpressionError",
    "JobResult",
    "NotTriggered",
    "RunResult",
    "Scope",
    "StepContext",
    "StepResult",
    "UsesRef",
    "WorkflowError",
    "check_trigger",
    "checkout",
    "evaluate",
    "is_pinned",
    "load_workflow",
    "parse_file_command",
    "run_workflow",
    "setup_python",
    "to_str",
    "triggered",
    "truthy",
]
