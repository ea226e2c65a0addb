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
    "tests/pipeline/test_watch.py": 205,
    "tests/pipeline/test_workflow_runs.py": 75,
    "tests/serving/test_deploy.py": 75,
    "tests/serving/kubernetes/test_k8s_agreement.py": 71,
    "tests/pipeline/test_low_traffic.py": 67,
    "tests/serving/local/test_local_target.py": 67,
    "tests/serving/kubernetes/test_k8s_release_workflow.py": 61,
    "tests/bundles/test_image.py": 56,
    "tests/bundles/test_weights.py": 56,
    "tests/cli/test_cli.py": 54,
    "tests/pipeline/test_unattended.py": 50,
    "tests/serving/kubernetes/test_k8s_watch.py": 47,
    "tests/registry/test_scaffold.py": 39,
    "tests/pipeline/test_demo.py": 33,
    "tests/serving/test_hostile_gate.py": 33,
    "tests/serving/local/test_agent_identity.py": 31,
    "tests/registry/test_verified_history.py": 31,
    "tests/bundles/test_store_migrate.py": 29,
    "tests/registry/test_crash.py": 26,
    "tests/pipeline/test_supply_chain.py": 25,
    "tests/registry/test_shared_registry.py": 25,
    "tests/packaging/test_wheel.py": 25,
    "tests/analysis/test_metrics.py": 23,
    "tests/packaging/test_install.py": 21,
    "tests/cli/test_exit_codes.py": 21,
    "tests/registry/test_push_races.py": 20,
    "tests/bundles/test_bundle.py": 20,
    "tests/registry/test_hostile_marks.py": 16,
    "tests/registry/test_hostile_sweep.py": 16,
    "tests/bundles/test_s3_store.py": 15,
    "tests/packaging/test_publish.py": 12,
    "tests/cli/test_hostile_text.py": 8,
    "tests/pipeline/test_push_retry.py": 7,
    "tests/registry/test_history.py": 7,
    "tests/serving/kubernetes/test_kubernetes_render.py": 7,
    "tests/pipeline/test_hostile_pr.py": 7,
    "tests/bundles/test_store_errors.py": 6,
    "tests/gha/test_gha.py": 6,
    "tests/registry/test_roles.py": 5,
    "tests/registry/test_hostile_trust.py": 4,
    "tests/registry/test_release.py": 4,
    "tests/registry/test_revert.py": 4,
    "tests/serving/kubernetes/test_kubernetes_schemas.py": 4,
    "tests/pipeline/test_pipeline.py": 3,
    "tests/registry/test_hostile_names.py": 3,
    "tests/cli/test_bad_input.py": 3,
    "tests/registry/test_trust.py": 3,
    "tests/serving/test_manifest_trust.py": 3,
    "tests/test_architecture.py": 2,
    "tests/pipeline/test_check_owns_every_path.py": 2,
    "tests/pipeline/test_workflow_lint.py": 2,
    "tests/test_registry_config.py": 2,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first; the order within a file is kept (the sort is stable)."""
    items.sort(key=lambda item: -SECONDS.get(item.nodeid.partition("::")[0], 0))
