"""`deploy` and `watch` obey a model's manifest only as the verified view vouches
for it (docs/ARCHITECTURE.md, "Trust"): every change of it after its verified
release is signed by a release signer. A keyless commit that loosens a threshold,
moves the metric source or changes what is served, hidden under a signed commit
on top, is refused (exit 3) naming it, before anything is started or judged."""

from __future__ import annotations

import pytest

from releasectl.errors import Refused
from releasectl.git import open_repo
from releasectl.manifest.edits import edit
from releasectl.serving.deploy import trusted
from testing.histories import MANIFEST, iris_stable
from testing.repos import Repo, assert_refused

# The kubernetes target with an image pinned by hand: nothing is built or pulled.
CLUSTER = {
    "deploy": {
        "target": "kubernetes",
        "kubernetes": {"image": "registry.example/ml/iris", "namespace": "ml"},
    },
    "bundle": {"image": "registry.example/ml/iris@sha256:" + "ab" * 32},
}


def _loosen_unsigned_then_sign_on_top(repo: Repo) -> str:
    """A keyless author raises the error-rate limit; a signer's later commit
    touches the folder, so the newest change of the model is signed."""
    path = repo.path / MANIFEST
    path.write_text(
        edit(
            path.read_text(),
            "release.yaml",
            {"analysis": {"metrics": {"error_rate": {"max": 1.0}}}},
        )
    )
    unsigned = repo.commit("iris: tune the analysis", sign=False)
    repo.write("model-releases/iris/NOTES.md", "notes\n")
    repo.commit("iris: notes")
    return unsigned


def test_a_keyless_manifest_change_after_the_release_is_refused(registry: Repo) -> None:
    iris_stable(registry)
    assert trusted(open_repo(registry.path), "iris").manifest.version == "1.0.0"
    unsigned = _loosen_unsigned_then_sign_on_top(registry)

    with pytest.raises(Refused) as refused:
        trusted(open_repo(registry.path), "iris")
    assert f"{MANIFEST} was changed by commit {unsigned[:12]}" in refused.value.message
    # One line naming the commit; the repository exactly as it was.
    assert_refused(registry, "deploy", "iris", code=3, words=unsigned[:12])


def test_signed_changes_after_the_release_and_a_verified_revert_are_obeyed(
    registry: Repo,
) -> None:
    iris_stable(registry, then="1.1.0")
    registry.write(MANIFEST, (registry.path / MANIFEST).read_text().replace("bake: 1m", "bake: 2m"))
    registry.commit("iris: a longer bake, signed")
    assert trusted(open_repo(registry.path), "iris").manifest.analysis.bake == 120

    # An unsigned change lands, then the incident revert goes back to 1.0.0: the
    # revert's content is the stable release's own, so the revert is obeyed.
    _loosen_unsigned_then_sign_on_top(registry)
    registry.ok("revert", "iris", "--reason", "bad answers")
    state = trusted(open_repo(registry.path), "iris")
    assert state.verified_revert and state.manifest.version == "1.0.0"
    error_rate = state.manifest.analysis.metrics.error_rate
    assert error_rate is not None and error_rate.max == 0.05


def test_watch_judges_by_no_threshold_a_keyless_commit_wrote(registry: Repo) -> None:
    """The cluster path reads the branch's manifest at HEAD (thresholds, the
    Prometheus URL): refused before any query, in the dry run too."""
    registry.add_model("iris")
    path = registry.path / MANIFEST
    prometheus = {"analysis": {"source": {"kind": "prometheus", "url": "http://127.0.0.1:9"}}}
    path.write_text(edit(path.read_text(), "release.yaml", {**CLUSTER, **prometheus}))
    registry.commit("iris: served by the cluster")
    registry.ok("release", "iris", "1.0.0")
    unsigned = _loosen_unsigned_then_sign_on_top(registry)
    for args in (["--dry-run"], []):
        assert_refused(registry, "watch", "iris", *args, code=3, words=unsigned[:12])


def test_the_deploy_job_takes_the_target_kind_only_from_a_vouched_manifest(
    registry: Repo,
) -> None:
    """deploy.yml skips a kubernetes model (Argo CD pulls): a keyless commit that
    declares the kubernetes target must not turn a revert's deploy into a skip."""
    from releasectl.pipeline import ci

    iris_stable(registry)
    path = registry.path / MANIFEST
    path.write_text(edit(path.read_text(), "release.yaml", CLUSTER))
    unsigned = registry.commit("iris: to the cluster", sign=False)
    registry.write("model-releases/iris/NOTES.md", "notes\n")
    registry.commit("iris: notes")
    with pytest.raises(Refused) as refused:
        ci.execute(open_repo(registry.path), [ci.Item("iris", "deploy", "1.0.0")])
    assert unsigned[:12] in refused.value.message
