"""The order the suite's files run in: the longest first.

`scripts/test` runs two xdist workers with `--dist loadfile`: each worker takes
whole files, in collection order, as it frees up. Files that take minutes
collected late leave one worker running them while the other is idle, so
the files are sorted by how long they took (seconds, both phases, on a 2-core
machine), the longest first; a file not listed goes after them, in collection
order. Refresh the figures from `scripts/test --durations=0` when the suite's
shape changes; a stale figure only costs balance, never a test.
"""

from __future__ import annotations

import pytest

SECONDS = {
    "tests/pipeline/test_watch.py": 272,
    "tests/cli/test_cli.py": 178,
    "tests/cli/test_hostile_text.py": 156,
    "tests/serving/test_deploy.py": 154,
    "tests/pipeline/test_workflow_runs.py": 147,
    "tests/pipeline/test_unattended.py": 109,
    "tests/pipeline/test_low_traffic.py": 108,
    "tests/bundles/test_weights.py": 107,
    "tests/serving/local/test_local_target.py": 101,
    "tests/registry/test_crash.py": 97,
    "tests/registry/test_revert.py": 96,
    "tests/registry/test_hostile_marks.py": 95,
    "tests/bundles/test_image.py": 91,
    "tests/registry/test_scaffold.py": 84,
    "tests/cli/test_bad_input.py": 80,
    "tests/serving/kubernetes/test_k8s_watch.py": 79,
    "tests/serving/test_hostile_gate.py": 74,
    "tests/registry/test_shared_registry.py": 70,
    "tests/pipeline/test_supply_chain.py": 68,
    "tests/registry/test_verified_history.py": 62,
    "tests/packaging/test_wheel.py": 59,
    "tests/pipeline/test_demo.py": 54,
    "tests/registry/test_push_races.py": 51,
    "tests/pipeline/test_pipeline.py": 46,
    "tests/registry/test_history.py": 44,
    "tests/serving/local/test_agent_identity.py": 45,
    "tests/serving/kubernetes/test_k8s_agreement.py": 42,
    "tests/cli/test_exit_codes.py": 41,
    "tests/bundles/test_bundle.py": 41,
    "tests/serving/kubernetes/test_kubernetes_render.py": 38,
    "tests/bundles/test_s3_store.py": 32,
    "tests/bundles/test_store_migrate.py": 36,
    "tests/registry/test_release.py": 31,
    "tests/pipeline/test_hostile_pr.py": 30,
    "tests/packaging/test_publish.py": 28,
    "tests/analysis/test_metrics.py": 24,
    "tests/registry/test_hostile_trust.py": 19,
    "tests/registry/test_trust.py": 17,
    "tests/pipeline/test_propose.py": 16,
    "tests/bundles/test_store_errors.py": 12,
    "tests/analysis/test_samples.py": 3,
    "tests/serving/kubernetes/test_kubernetes_schemas.py": 11,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first; the order within a file is kept (the sort is stable)."""
    items.sort(key=lambda item: -SECONDS.get(item.nodeid.partition("::")[0], 0))
