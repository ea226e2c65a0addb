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
    "tests/pipeline/test_watch.py": 266,
    "tests/serving/test_deploy.py": 231,
    "tests/bundles/test_weights.py": 191,
    "tests/pipeline/test_workflow_runs.py": 144,
    "tests/cli/test_cli.py": 99,
    "tests/serving/local/test_local_target.py": 85,
    "tests/serving/kubernetes/test_k8s_release_workflow.py": 83,
    "tests/registry/test_shared_registry.py": 76,
    "tests/bundles/test_image.py": 74,
    "tests/serving/kubernetes/test_k8s_agreement.py": 74,
    "tests/pipeline/test_low_traffic.py": 68,
    "tests/serving/kubernetes/test_k8s_watch.py": 64,
    "tests/serving/local/test_agent_identity.py": 61,
    "tests/serving/test_hostile_gate.py": 53,
    "tests/pipeline/test_unattended.py": 53,
    "tests/registry/test_scaffold.py": 46,
    "tests/bundles/test_bundle.py": 45,
    "tests/pipeline/test_supply_chain.py": 44,
    "tests/registry/test_verified_history.py": 40,
    "tests/pipeline/test_demo.py": 37,
    "tests/packaging/test_wheel.py": 33,
    "tests/cli/test_exit_codes.py": 33,
    "tests/bundles/test_store_migrate.py": 32,
    "tests/registry/test_hostile_sweep.py": 31,
    "tests/packaging/test_install.py": 29,
    "tests/bundles/test_s3_store.py": 25,
    "tests/analysis/test_metrics.py": 23,
    "tests/registry/test_crash.py": 23,
    "tests/bundles/test_store_errors.py": 20,
    "tests/registry/test_push_races.py": 20,
    "tests/packaging/test_publish.py": 19,
    "tests/registry/test_hostile_marks.py": 17,
    "tests/registry/test_hostile_trust.py": 16,
    "tests/pipeline/test_hostile_pr.py": 15,
    "tests/cli/test_hostile_text.py": 15,
    "tests/serving/kubernetes/test_kubernetes_schemas.py": 13,
    "tests/registry/test_history.py": 11,
    "tests/pipeline/test_push_retry.py": 11,
    "tests/serving/kubernetes/test_kubernetes_render.py": 10,
    "tests/gha/test_gha.py": 10,
    "tests/cli/test_bad_input.py": 8,
    "tests/registry/test_release.py": 8,
    "tests/registry/test_trust.py": 7,
    "tests/pipeline/test_pipeline.py": 6,
    "tests/pipeline/test_check_owns_every_path.py": 6,
    "tests/registry/test_revert.py": 6,
    "tests/registry/test_roles.py": 5,
    "tests/registry/test_hostile_names.py": 5,
    "tests/pipeline/test_workflow_lint.py": 4,
    "tests/test_registry_config.py": 3,
    "tests/serving/test_manifest_trust.py": 3,
    "tests/test_architecture.py": 3,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first; the order within a file is kept (the sort is stable)."""
    items.sort(key=lambda item: -SECONDS.get(item.nodeid.partition("::")[0], 0))
