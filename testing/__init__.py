"""Test support for releasectl's suite (beside toolkit/, like pre-commit's `testing`):
real parts, never mocks.

- repos: scratch registries with real SSH signing keys; `assert_refused`
- histories: the release histories tests start from
- bentos: the iris example and the fixture bentos, built and served by real bentoml
- processes, ports, traffic: servers found and stopped by PID, free ports, load clients
- wheels: the local wheelhouse and clean virtual environments (no index, ever)
- gha: a local stand-in for GitHub's Actions runner (its own tests: tests/gha/)
"""
