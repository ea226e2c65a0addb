"""The order the suite's files run in: the longest first.

`scripts/test` runs three xdist workers with `--dist loadfile`: each worker takes
whole files, in collection order, as it frees up. Files that take minutes
collected late leave one worker running them while the others are idle, so
the files are sorted by how long they took (seconds, both phases, on a 2-core
machine), the longest first; a file not listed goes after them, in collection
order. Refresh the figures from `scripts/test --durations=0` when the suite's
shape changes; a stale figure only costs balance, never a test.
"""

from __future__ import annotations

import pytest

SECONDS = {
    "tests/serving/kubernetes/test_k8s_mesh_agreement.py": 20,  # new: measured alone
    "tests/serving/kubernetes/test_kubernetes_canary.py": 15,  # new: measured alone
    "tests/pipeline/test_watch.py": 285,
    "tests/pipeline/test_canary_watch.py": 90,  # new: measured alone (75 s)
    "tests/serving/local/test_canary.py": 35,  # new: measured alone (27 s)
    "tests/serving/test_deploy.py": 115,
    "tests/pipeline/test_workflow_runs.py": 110,
    "tests/serving/local/test_local_target.py": 96,
    "tests/bundles/test_weights.py": 95,
    "tests/serving/kubernetes/test_k8s_release_workflow.py": 79,
    "tests/pipeline/test_low_traffic.py": 79,
    "tests/bundles/test_image.py": 77,
    "tests/cli/test_cli.py": 76,
    "tests/serving/kubernetes/test_k8s_agreement.py": 75,
    "tests/pipeline/test_unattended.py": 73,
    "tests/registry/test_scaffold.py": 64,
    "tests/serving/kubernetes/test_k8s_watch.py": 58,
    "tests/pipeline/test_demo.py": 43,
    "tests/serving/test_hostile_gate.py": 41,
    "tests/registry/test_verified_history.py": 38,
    "tests/pipeline/test_supply_chain.py": 37,
    "tests/registry/test_shared_registry.py": 36,
    "tests/serving/local/test_agent_identity.py": 35,
    "tests/bundles/test_bundle.py": 34,
    "tests/cli/test_exit_codes.py": 27,
    "tests/registry/test_push_races.py": 27,
    "tests/bundles/test_store_migrate.py": 25,
    "tests/packaging/test_install.py": 25,
    "tests/packaging/test_wheel.py": 25,
    "tests/analysis/test_metrics.py": 24,
    "tests/registry/test_crash.py": 23,
    "tests/registry/test_hostile_sweep.py": 23,
    "tests/bundles/test_s3_store.py": 22,
    "tests/registry/test_hostile_marks.py": 18,
    "tests/packaging/test_publish.py": 16,
    "tests/cli/test_hostile_text.py": 12,
    "tests/registry/test_history.py": 10,
    "tests/pipeline/test_push_retry.py": 10,
    "tests/pipeline/test_hostile_pr.py": 9,
    "tests/bundles/test_store_errors.py": 9,
    "tests/serving/kubernetes/test_kubernetes_render.py": 8,
    "tests/registry/test_hostile_trust.py": 7,
    "tests/gha/test_gha.py": 7,
    "tests/registry/test_roles.py": 6,
    "tests/serving/kubernetes/test_kubernetes_schemas.py": 6,
    "tests/test_architecture.py": 6,
    "tests/registry/test_release.py": 5,
    "tests/registry/test_hostile_names.py": 5,
    "tests/registry/test_revert.py": 4,
    "tests/cli/test_bad_input.py": 4,
    "tests/pipeline/test_check_owns_every_path.py": 4,
    "tests/registry/test_trust.py": 4,
    "tests/pipeline/test_pipeline.py": 3,
    "tests/pipeline/test_propose.py": 3,
    "tests/pipeline/test_workflow_lint.py": 3,
    "tests/serving/test_manifest_trust.py": 2,
    "tests/test_registry_config.py": 2,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first; the order within a file is kept (the sort is stable)."""
    items.sort(key=lambda item: -SECONDS.get(item.nodeid.partition("::")[0], 0))
