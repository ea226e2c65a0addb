"""Registry benchmark: releasectl's commands on a large registry, next to GTO
(docs/ARCHITECTURE.md, "Performance budgets").

Generates (once, then cached under benchmarks/.cache/) a registry of 20 models
with N releases each, round robin like a real monorepo:

* every release is a SIGNED commit that changes only
  `model-releases/<model>/release.yaml` (version, serial: the text
  `releasectl release` writes, made by `releasectl.manifest.edits.edit`) plus a
  SIGNED annotated tag `release/<model>/v<version>` carrying releasectl's tag
  message;
* with n the release's 1-based number within its model and k the model's index,
  a release is rejected when (n + k) % 10 == 0 (every tenth) and otherwise stable
  when (n + k) % 3 == 0 (every third): a rejected release is never stable, and the
  offset k gives the models different current states;
* the same history as GTO tags in the same repository: `<model>@v<version>`
  (register) for every release and `<model>#prod#<N>` (assignment) for every
  stable one, annotated, unsigned (GTO does not sign), in GTO's own messages.

Every signature is real: an ed25519 key made with ssh-keygen (no agent), git's
own `commit-tree -S` / `tag -s`, and every signed object is verified with
`git verify-commit` / `git verify-tag` against the registry's trust root before
the repository is cached. The trust root is made by `releasectl init`.

Then it times whole processes (wall clock, median of --runs after one warm-up)
and prints a Markdown table; results also go to benchmarks/results/registry.json.
Run it through `scripts/bench` (installs the `bench` extra, i.e. gto).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

GENERATOR_VERSION = 2  # bump whenever the generated repository changes
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results" / "registry.json"
BIN = Path(sys.executable).parent
RELEASECTL = str(BIN / "releasectl")
GTO = str(BIN / "gto")

EMAIL = "bench@example.test"
NAME = "Bench Releaser"
T0 = 1_700_000_000  # the first release's time; releases are 10 minutes apart
MODELS = 20

GOAL_READ = 0.3
GOAL_REVERT = 0.5
GOAL_HELP = 0.3
GOAL_SCALING = 2.0
GOAL_GTO = 40.0


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class Spec:
    models: int
    per_model: int

    @property
    def releases(self) -> int:
        return self.models * self.per_model

    @property
    def key(self) -> str:
        return f"registry-{self.models}x{self.per_model}-g{GENERATOR_VERSION}"

    def names(self) -> list[str]:
        return [f"model-{k:02d}" for k in range(self.models)]


def version(n: int) -> str:
    """The n-th (1-based) release of a model: 1.0.0, 1.0.1, ... 1.0.9, 1.1.0, ..."""
    return f"1.{(n - 1) // 10}.{(n - 1) % 10}"


def is_rejected(k: int, n: int) -> bool:
    return (n + k) % 10 == 0


def is_stable(k: int, n: int) -> bool:
    return (n + k) % 3 == 0 and not is_rejected(k, n)


def pick_model(spec: Spec) -> tuple[str, str, str]:
    """(M, its current version, its last stable version): the first model whose
    current release is neither stable nor rejected and that has a stable one
    before it, so that a revert has something to do and makes a rejected/ tag."""
    n = spec.per_model
    for k, name in enumerate(spec.names()):
        if is_stable(k, n) or is_rejected(k, n):
            continue
        stable = [m for m in range(n - 1, 0, -1) if is_stable(k, m)]
        if stable:
            return name, version(n), version(stable[0])
    raise SystemExit("no model fits the revert scenario")


# --------------------------------------------------------------------------- helpers


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Progress:
    """One line of progress on stderr (rewritten in place on a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.start = time.perf_counter()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.done < self.total and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0.0
        line = f"  {self.label}: {self.done}/{self.total} ({rate:.0f}/s, ETA {eta:.0f}s)"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(78) + ("\n" if self.done >= self.total else ""))
            sys.stderr.flush()
        else:
            log(line)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """No agent, no user or system git config: only the repository's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "RELEASECTL_"))}
    env.pop("SSH_AUTH_SOCK", None)
    empty = CACHE / "empty-gitconfig"
    if not empty.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        empty.write_text("")
    env.update(
        GIT_CONFIG_GLOBAL=str(empty),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_EDITOR="false",
        LC_ALL="C",
        BENTOML_DO_NOT_TRACK="true",
    )
    env.update(extra or {})
    return env


def dates(ts: int) -> dict[str, str]:
    stamp = f"@{ts} +0000"
    return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}


def git(repo: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        input=input,
        capture_output=True,
        text=True,
        env=env or clean_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args[:4])} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Rel:
    k: int  # model index
    model: str
    n: int  # 1-based number of the release within its model
    g: int  # 1-based number of the release in the whole repository

    @property
    def version(self) -> str:
        return version(self.n)

    @property
    def time(self) -> int:
        return T0 + 600 * self.g


def generate(spec: Spec, dest: Path) -> dict[str, object]:
    """Build the registry for `spec` into `dest` (a folder: key, repo/, meta.json)."""
    from releasectl.manifest import edits
    from releasectl.names import manifest_path
    from releasectl.registry.scaffold import new_model

    started = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 2)
        return now

    dest.mkdir(parents=True)
    key = dest / "signing-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", EMAIL, "-f", str(key)], check=True
    )
    key.chmod(0o600)
    repo = dest / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for setting, value in (
        ("gpg.format", "ssh"),
        ("user.signingkey", str(key)),
        ("user.email", EMAIL),
        ("user.name", NAME),
        ("tag.gpgSign", "false"),
    ):
        git(repo, "config", setting, value)

    # The trust root by `releasectl init`, the models by `releasectl new`'s code.
    env0 = clean_env(dates(T0 - 1200))
    subprocess.run([RELEASECTL, "init"], cwd=repo, env=env0, check=True, capture_output=True)
    names = spec.names()
    for k, model in enumerate(names):
        new_model(repo, model, port=3000 + k)
        # The benchmark compares with an earlier release (--baseline), which
        # knows no `bundle.train`: keep to the keys every release reads.
        path = repo / manifest_path(model)
        path.write_text(
            "".join(
                line
                for line in path.read_text().splitlines(keepends=True)
                if not line.startswith(("  train:", "  # "))
            )
        )
    git(repo, "add", "-A", env=env0)
    git(
        repo, "commit", "-q", "-S", "-m", f"Add {len(names)} models", env=clean_env(dates(T0 - 600))
    )
    base = git(repo, "rev-parse", "HEAD").strip()
    t = phase("setup", started)

    # Release order: round robin over the models.
    rels = [
        Rel(k, model, n, (n - 1) * spec.models + k + 1)
        for n in range(1, spec.per_model + 1)
        for k, model in enumerate(names)
    ]

    # 1. Manifests, as `releasectl release` writes them, and the unsigned
    #    commit chain (for its trees) through one `git fast-import`.
    texts = {m: (repo / manifest_path(m)).read_text() for m in names}
    stream: list[bytes] = []
    messages: list[str] = []
    progress = Progress("manifests", len(rels))
    for i, r in enumerate(rels):
        manifest = manifest_path(r.model)
        texts[r.model] = edits.edit(
            texts[r.model],
            manifest,
            {"version": r.version, "serial": r.n, "rollback": None},
            model=r.model,
        )
        message = (
            f"Release {r.model} {r.version}\n\n"
            f"Releasectl-Model: {r.model}\n"
            f"Releasectl-Version: {r.version}\n"
            f"Releasectl-Serial: {r.n}\n"
        )
        messages.append(message)
        data, msg = texts[r.model].encode(), message.encode()
        who = f"{NAME} <{EMAIL}> {r.time} +0000"
        stream.append(
            b"commit refs/bench/unsigned\n"
            + f"committer {who}\ndata {len(msg)}\n".encode()
            + msg
            + (f"from {base}\n".encode() if i == 0 else b"")
            + f"M 100644 inline {manifest}\ndata {len(data)}\n".encode()
            + data
            + b"\n"
        )
        progress.step()
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=repo,
        input=b"".join(stream),
        env=clean_env(),
        check=True,
    )
    trees = git(repo, "log", "--reverse", "--format=%T", f"{base}..refs/bench/unsigned").split()
    assert len(trees) == len(rels), (len(trees), len(rels))
    t = phase("manifests + trees (fast-import)", t)

    # 2. The signed chain: one `git commit-tree -S` per release, in order.
    commits: list[str] = []
    parent = base
    progress = Progress("signed release commits", len(rels))
    for r, tree, message in zip(rels, trees, messages, strict=True):
        proc = subprocess.run(
            ["git", "commit-tree", "-S", tree, "-p", parent, "-F", "-"],
            cwd=repo,
            input=message,
            capture_output=True,
            text=True,
            env=clean_env(dates(r.time)),
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"commit-tree -S failed: {proc.stderr}")
        parent = proc.stdout.strip()
        commits.append(parent)
        progress.step()
    git(repo, "update-ref", "refs/heads/main", parent)
    git(repo, "update-ref", "-d", "refs/bench/unsigned")
    t = phase("signed commits", t)

    # 3. Signed annotated tags, in two processes at a time.
    jobs: list[tuple[str, str, str, int]] = []  # name, target, message, time
    for r, commit in zip(rels, commits, strict=True):
        jobs.append(
            (
                f"release/{r.model}/v{r.version}",
                commit,
                f"{r.model} {r.version}\n\nReleasectl-Model: {r.model}\nReleasectl-Serial: {r.n}\n",
                r.time,
            )
        )
        if is_stable(r.k, r.n):
            jobs.append(
                (
                    f"stable/{r.model}/v{r.version}",
                    commit,
                    f"{r.model} {r.version} is stable\n\nReleasectl-Model: {r.model}\n",
                    r.time + 300,
                )
            )
        if is_rejected(r.k, r.n):
            back = max((m for m in range(1, r.n) if is_stable(r.k, m)), default=None)
            to = f"\n\nRolled back to {version(back)}." if back else ""
            jobs.append(
                (
                    f"rejected/{r.model}/v{r.version}",
                    commit,
                    f"{r.model} {r.version} rejected: failed analysis{to}\n\n"
                    f"Releasectl-Model: {r.model}\n",
                    r.time + 400,
                )
            )
    progress = Progress("signed tags", len(jobs))

    def make_tag(job: tuple[str, str, str, int]) -> None:
        name, target, message, when = job
        proc = subprocess.run(
            ["git", "tag", "-s", "-F", "-", name, target],
            cwd=repo,
            input=message,
            capture_output=True,
            text=True,
            env=clean_env(dates(when)),
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"git tag -s {name} failed: {proc.stderr}")
        progress.step()

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(make_tag, jobs))
    t = phase("signed tags", t)

    # 4. The same history as GTO tags (one fast-import): register every
    #    release, assign every stable one to prod.
    gto: list[bytes] = []
    counters = dict.fromkeys(names, 0)
    for r, commit in zip(rels, commits, strict=True):
        events = [
            (
                f"{r.model}@v{r.version}",
                f"Registering artifact {r.model} version v{r.version}",
                r.time + 1,
            )
        ]
        if is_stable(r.k, r.n):
            counters[r.model] += 1
            events.append(
                (
                    f"{r.model}#prod#{counters[r.model]}",
                    f"Assigning stage prod to artifact {r.model} version v{r.version}",
                    r.time + 301,
                )
            )
        for name, message, when in events:
            msg = message.encode()
            gto.append(
                f"tag {name}\nfrom {commit}\ntagger {NAME} <{EMAIL}> {when} +0000\n".encode()
                + f"data {len(msg)}\n".encode()
                + msg
                + b"\n"
            )
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=repo,
        input=b"".join(gto),
        env=clean_env(),
        check=True,
    )
    t = phase("GTO tags (fast-import)", t)

    # 5. Verify every signature against the trust root before trusting the cache.
    allowed = dest / "allowed_signers"
    allowed.write_text(git(repo, "show", "HEAD:.releasectl/allowed_signers"))
    verifier = ["-c", f"gpg.ssh.allowedSignersFile={allowed}"]
    tag_names = [job[0] for job in jobs]
    chunks = [("verify-commit", commits[i : i + 400]) for i in range(0, len(commits), 400)]
    chunks += [("verify-tag", tag_names[i : i + 400]) for i in range(0, len(tag_names), 400)]
    progress = Progress("verified signatures", len(commits) + len(tag_names))

    def verify(chunk: tuple[str, list[str]]) -> None:
        what, objects = chunk
        proc = subprocess.run(
            ["git", *verifier, what, *objects],
            cwd=repo,
            capture_output=True,
            text=True,
            env=clean_env(),
            check=False,
        )
        good = proc.stderr.count('Good "git" signature for ' + EMAIL)
        if proc.returncode != 0 or good != len(objects):
            raise SystemExit(f"{what}: {good}/{len(objects)} good signatures: {proc.stderr[-500:]}")
        progress.step(len(objects))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(verify, chunks))
    t = phase("verify every signature", t)

    # 6. Housekeeping as `git gc` / `git maintenance` would do it, and a work tree.
    git(repo, "reset", "-q", "--hard", "main")
    git(repo, "repack", "-a", "-d", "-q")
    git(repo, "prune", "--expire=now")
    git(repo, "pack-refs", "--all")
    git(repo, "commit-graph", "write", "--reachable", "--changed-paths")
    phase("repack, pack-refs, commit-graph", t)

    model, current, stable = pick_model(spec)
    meta: dict[str, object] = {
        "generator_version": GENERATOR_VERSION,
        "models": spec.models,
        "releases_per_model": spec.per_model,
        "release_commits": len(commits),
        "releasectl_tags": len(jobs),
        "stable_tags": sum(j[0].startswith("stable/") for j in jobs),
        "rejected_tags": sum(j[0].startswith("rejected/") for j in jobs),
        "gto_tags": len(gto),
        "signatures_verified": len(commits) + len(jobs),
        "model": model,
        "current": current,
        "last_stable": stable,
        "generation_seconds": round(time.perf_counter() - started, 1),
        "phases_seconds": phases,
        "git": git(repo, "--version").strip(),
    }
    sanity(spec, repo, meta)
    (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def sanity(spec: Spec, repo: Path, meta: dict[str, object]) -> None:
    """releasectl and GTO both see the generated history as intended."""
    model = str(meta["model"])
    env = clean_env()
    out = run_ok([RELEASECTL, "history", model, "--json"], repo, env)
    rows = json.loads(out)
    if len(rows) != spec.per_model or rows[0]["version"] != meta["current"]:
        raise SystemExit(f"releasectl history {model}: {len(rows)} releases, newest {rows[0]}")
    shown = json.loads(run_ok([RELEASECTL, "show", model, "--json"], repo, env))
    if shown["last_stable"] != meta["last_stable"] or shown["version"] != meta["current"]:
        raise SystemExit(f"releasectl show {model}: unexpected {shown}")
    run_ok([RELEASECTL, "verify", model, str(meta["last_stable"])], repo, env)
    if shutil.which(GTO) or Path(GTO).exists():
        prod = run_ok([GTO, "show", f"{model}#prod"], repo, env)
        if f"v{meta['last_stable']}" not in prod:
            raise SystemExit(f"gto show {model}#prod does not name v{meta['last_stable']}:\n{prod}")
        hist = run_ok([GTO, "history", model], repo, env)
        if f"v{meta['current']}" not in hist:
            raise SystemExit(f"gto history {model} lacks v{meta['current']}:\n{hist[:2000]}")
        meta["gto_sees"] = {"prod": f"v{meta['last_stable']}", "history_lines": hist.count("\n")}


def run_ok(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def cached(spec: Spec, regenerate: bool) -> tuple[Path, dict[str, object]]:
    """The generated registry for `spec`: from the cache, or made now."""
    dest = CACHE / spec.key
    meta_file = dest / "meta.json"
    if meta_file.exists() and not regenerate:
        meta = json.loads(meta_file.read_text())
        log(f"{spec.key}: cached (generated in {meta['generation_seconds']} s)")
        return dest, meta
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"{spec.key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"{spec.key}: generating {spec.releases} signed releases (cached afterwards)")
    try:
        meta = generate(spec, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # The repository points at its key by absolute path: fix it after the move.
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    git(dest / "repo", "config", "user.signingkey", str(dest / "signing-key"))
    log(f"{spec.key}: generated in {meta['generation_seconds']} s {meta['phases_seconds']}")
    return dest, meta


# --------------------------------------------------------------------------- timing


def copy_repo(dest: Path, into: Path) -> Path:
    """A private working copy of the cached repository (the cache stays pristine)."""
    repo = into / "repo"
    subprocess.run(["cp", "-a", str(dest / "repo"), str(repo)], check=True)
    git(repo, "config", "user.signingkey", str(dest / "signing-key"))
    git(repo, "update-index", "-q", "--refresh")
    return repo


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def measure(
    label: str, argv: list[str], cwd: Path, env: dict[str, str], runs: int
) -> dict[str, object]:
    timed(argv, cwd, env)  # warm-up
    samples = [timed(argv, cwd, env) for _ in range(runs)]
    p50 = statistics.median(samples)
    log(f"  {label:<34} p50 {p50 * 1000:8.1f} ms  runs {[round(s * 1000) for s in samples]}")
    return {"argv": argv[1:], "runs_s": [round(s, 4) for s in samples], "p50_s": round(p50, 4)}


def measure_revert(
    dest: Path, model: str, stable: str, env: dict[str, str], runs: int, scratch: Path
) -> dict[str, object]:
    """A real revert, each run on a fresh copy of the same state (copy not timed)."""
    argv = [RELEASECTL, "revert", model, "--reason", "benchmark"]
    samples: list[float] = []
    for i in range(runs + 1):
        where = Path(tempfile.mkdtemp(prefix=f"revert{i}-", dir=scratch))
        repo = copy_repo(dest, where)
        elapsed = timed(argv, repo, env)
        if i == 0:  # the warm-up run: also check what the revert did
            shown = json.loads(run_ok([RELEASECTL, "show", model, "--json"], repo, env))
            if shown["version"] != stable or not shown["rollback"]:
                raise SystemExit(f"revert did not land on {stable}: {shown}")
        else:
            samples.append(elapsed)
        shutil.rmtree(where)
    p50 = statistics.median(samples)
    label = f"revert {model}"
    log(f"  {label:<34} p50 {p50 * 1000:8.1f} ms  runs {[round(s * 1000) for s in samples]}")
    return {"argv": argv[1:], "runs_s": [round(s, 4) for s in samples], "p50_s": round(p50, 4)}


def bench_size(
    spec: Spec,
    runs: int,
    gto_runs: int,
    regenerate: bool,
    scratch: Path,
    baseline: list[str] | None = None,
) -> dict[str, object]:
    dest, meta = cached(spec, regenerate)
    model, current, stable = str(meta["model"]), str(meta["current"]), str(meta["last_stable"])
    log(f"{spec.key}: timing, M={model} (current {current}, last stable {stable})")
    env = clean_env()
    work = Path(tempfile.mkdtemp(prefix="reads-", dir=scratch))
    repo = copy_repo(dest, work)
    rc = RELEASECTL
    commands: dict[str, dict[str, object]] = {}
    commands["history --json"] = measure(
        f"history {model} --json", [rc, "history", model, "--json"], repo, env, runs
    )
    commands["show --json"] = measure(
        f"show {model} --json", [rc, "show", model, "--json"], repo, env, runs
    )
    commands["verify"] = measure(
        f"verify {model} {stable}", [rc, "verify", model, stable], repo, env, runs
    )
    commands["revert --dry-run"] = measure(
        f"revert {model} --dry-run", [rc, "revert", model, "--dry-run"], repo, env, runs
    )
    commands["revert"] = measure_revert(dest, model, stable, env, runs, scratch)
    commands["--help"] = measure("--help", [rc, "--help"], repo, env, runs)
    commands["gto show #prod"] = measure(
        f"gto show {model}#prod", [GTO, "show", f"{model}#prod"], repo, env, gto_runs
    )
    commands["gto history"] = measure(
        f"gto history {model}", [GTO, "history", model], repo, env, gto_runs
    )
    commands.update(bench_verified(model, repo, env, runs, scratch, baseline))
    shutil.rmtree(work)
    return {
        "spec": {"models": spec.models, "releases_per_model": spec.per_model},
        "meta": meta,
        "commands": commands,
    }


def baseline_cli(rev: str, scratch: Path) -> list[str]:
    """releasectl as it was at `rev` (its package extracted with git archive, run
    by this interpreter): today's figures measured in the same invocation."""
    where = scratch / f"baseline-{rev[:12]}"
    where.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", rev, "toolkit"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    code = "import sys; from releasectl.cli import main; sys.argv[0] = 'releasectl'; main()"
    return ["env", f"PYTHONPATH={where / 'toolkit'}", sys.executable, "-c", code]


def measure_pair(
    label: str,
    ours: list[str],
    theirs: list[str],
    cwd: Path,
    env: dict[str, str],
    runs: int,
) -> tuple[dict[str, object], dict[str, object]]:
    """This release and the baseline, run by turns (after one warm-up each), so
    that a busy machine weighs on both alike."""
    timed(ours, cwd, env)
    timed(theirs, cwd, env)
    a, b = [], []
    for _ in range(runs):
        a.append(timed(ours, cwd, env))
        b.append(timed(theirs, cwd, env))
    out = []
    for who, samples in (("", a), ("baseline ", b)):
        p50 = statistics.median(samples)
        log(f"  {who + label:<34} p50 {p50 * 1000:8.1f} ms  (paired)")
        out.append({"runs_s": [round(x, 4) for x in samples], "p50_s": round(p50, 4)})
    return out[0], out[1]


def measure_cold_history(
    model: str, repo: Path, env: dict[str, str], runs: int
) -> dict[str, object]:
    """history with the verdict cache emptied before every run: every tag and
    commit signature of the model checked again."""
    verdicts = repo / ".git" / "releasectl" / "verdicts"
    samples = []
    for _ in range(runs):
        shutil.rmtree(verdicts, ignore_errors=True)
        samples.append(timed([RELEASECTL, "history", model, "--json"], repo, env))
    p50 = statistics.median(samples)
    log(f"  {'history (cold verdict cache)':<34} p50 {p50 * 1000:8.1f} ms")
    return {"runs_s": [round(x, 4) for x in samples], "p50_s": round(p50, 4)}


def measure_second_clone(
    model: str, repo: Path, env: dict[str, str], runs: int, scratch: Path
) -> dict[str, dict[str, object]]:
    """A teammate's fresh clone without tags: `sync --pull`, then its first `show`."""
    pulls, shows = [], []
    for i in range(runs):
        clone = scratch / f"clone-{i}"
        subprocess.run(
            ["git", "clone", "-q", "--no-tags", str(repo), str(clone)], env=env, check=True
        )
        pulls.append(timed([RELEASECTL, "sync", "--pull"], clone, env))
        shows.append(timed([RELEASECTL, "show", model, "--json"], clone, env))
        shutil.rmtree(clone)
    out = {}
    for key, samples in (("sync --pull (fresh clone)", pulls), ("show after sync --pull", shows)):
        p50 = statistics.median(samples)
        log(f"  {key:<34} p50 {p50 * 1000:8.1f} ms")
        out[key] = {"runs_s": [round(x, 4) for x in samples], "p50_s": round(p50, 4)}
    return out


def bench_verified(
    model: str,
    repo: Path,
    env: dict[str, str],
    runs: int,
    scratch: Path,
    baseline: list[str] | None,
) -> dict[str, dict[str, object]]:
    """History with verdicts, cold and warm, next to the unverified history of
    the baseline release; a second clone's reads after `sync --pull`."""
    out: dict[str, dict[str, object]] = {}
    if baseline is not None:
        stable = json.loads(run_ok([RELEASECTL, "show", model, "--json"], repo, env))["last_stable"]
        for key, args in (
            ("history --json", ["history", model, "--json"]),
            ("show --json", ["show", model, "--json"]),
            ("verify", ["verify", model, str(stable)]),
            ("revert --dry-run", ["revert", model, "--dry-run"]),
        ):
            ours, theirs = measure_pair(
                " ".join(args), [RELEASECTL, *args], [*baseline, *args], repo, env, runs
            )
            out[f"paired {key}"], out[f"baseline {key}"] = ours, theirs
    out["history cold"] = measure_cold_history(model, repo, env, runs)
    out["history warm"] = measure(
        f"history {model} --json (warm)", [RELEASECTL, "history", model, "--json"], repo, env, runs
    )
    out.update(measure_second_clone(model, repo, env, min(runs, 3), scratch))
    return out


# --------------------------------------------------------------------------- report

ROWS = [
    # key, shown as, goal (seconds) at the largest size
    ("history --json", "releasectl history M --json", GOAL_READ),
    ("show --json", "releasectl show M --json", GOAL_READ),
    ("verify", "releasectl verify M V", GOAL_READ),
    ("revert --dry-run", "releasectl revert M --dry-run", GOAL_READ),
    ("revert", "releasectl revert M (real)", GOAL_REVERT),
    ("--help", "releasectl --help", GOAL_HELP),
]
GTO_PAIRS = [
    ("history --json", "gto history", "history: releasectl history M --json vs gto history M"),
    ("show --json", "gto show #prod", "last stable: releasectl show M --json vs gto show M#prod"),
]


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f} ms"


def p50(result: dict[str, object] | None, key: str) -> float | None:
    if result is None:
        return None
    return float(result["commands"][key]["p50_s"])  # type: ignore[index]


def report(
    small: dict[str, object], large: dict[str, object] | None
) -> tuple[str, list[dict[str, object]]]:
    sizes = [small] + ([large] if large else [])
    labels = [f"{s['meta']['release_commits']:,}" for s in sizes]  # type: ignore[index]
    top = labels[-1]
    verdicts: list[dict[str, object]] = []
    lines = [
        f"| command | p50 @ {labels[0]} | p50 @ {labels[1] if large else '10,000'} "
        f"| ratio | goal | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for key, shown, goal in ROWS:
        a, b = p50(small, key), p50(large, key)
        at = b if b is not None else a
        assert at is not None
        ratio = None if b is None or a is None else b / a
        ok_abs = at <= goal
        ok_scale = ratio is None or key == "--help" or ratio < GOAL_SCALING
        goal_text = f"≤ {goal * 1000:.0f} ms" + ("" if key == "--help" else ", ratio < 2×")
        ok = ok_abs and ok_scale
        lines.append(
            f"| `{shown}` | {ms(a)} | {ms(b)} | {'—' if ratio is None else f'{ratio:.2f}×'} "
            f"| {goal_text} | {'pass' if ok else 'FAIL'} |"
        )
        verdicts.append(
            {
                "command": shown,
                "p50_small_s": a,
                "p50_large_s": b,
                "ratio": ratio,
                "goal_s": goal,
                "pass": ok,
            }
        )
    lines += [
        "",
        f"| GTO comparison @ {top} releases | releasectl p50 | gto p50 | gto / releasectl "
        f"| goal | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    biggest = sizes[-1]
    for ours, theirs, shown in GTO_PAIRS:
        a, b = p50(biggest, ours), p50(biggest, theirs)
        assert a is not None and b is not None
        speedup = b / a
        ok = speedup >= GOAL_GTO
        lines.append(
            f"| {shown} | {ms(a)} | {ms(b)} | {speedup:.1f}× | ≥ {GOAL_GTO:.0f}× "
            f"| {'pass' if ok else 'FAIL'} |"
        )
        verdicts.append(
            {
                "command": shown,
                "releasectl_s": a,
                "gto_s": b,
                "speedup": speedup,
                "goal": GOAL_GTO,
                "pass": ok,
            }
        )
    return "\n".join(lines), verdicts


GOAL_WARM = 0.2
GOAL_WARM_RATIO = 1.2
GOAL_SAME = 1.1  # reads that verify marks only where a decision needs it


def report_verified(large: dict[str, object]) -> tuple[str, list[dict[str, object]]]:
    """The shared-registry figures at the largest size, against their goals."""
    commands = cast("dict[str, dict[str, float]]", large["commands"])

    def at(key: str) -> float | None:
        entry = commands.get(key)
        return None if entry is None else float(entry["p50_s"])

    base, cold = at("baseline history --json"), at("history cold")
    warm = at("paired history --json") or at("history warm")
    rows = [
        (
            "history, verdicts, warm cache",
            warm,
            f"≤ {GOAL_WARM * 1000:.0f} ms",
            warm is not None and warm <= GOAL_WARM,
        ),
        ("history, verdicts, cold cache", cold, "reported", True),
        ("history, unverified (baseline release)", base, "reported", True),
        (
            "show (warm)",
            at("show --json"),
            f"≤ {GOAL_WARM * 1000:.0f} ms",
            (at("show --json") or 9) <= GOAL_WARM,
        ),
        (
            "revert --dry-run (cold)",
            at("revert --dry-run"),
            f"≤ {GOAL_READ * 1000:.0f} ms",
            (at("revert --dry-run") or 9) <= GOAL_READ,
        ),
        ("sync --pull, fresh clone", at("sync --pull (fresh clone)"), "reported", True),
        ("show after sync --pull", at("show after sync --pull"), "reported", True),
    ]
    lines = ["| shared registry @ largest size | p50 | goal | result |", "|---|---:|---|---|"]
    verdicts: list[dict[str, object]] = []
    for shown, value, goal, ok in rows:
        lines.append(f"| {shown} | {ms(value)} | {goal} | {'pass' if ok else 'FAIL'} |")
        verdicts.append({"command": shown, "p50_s": value, "goal": goal, "pass": ok})
    for key in ("show --json", "verify", "revert --dry-run"):
        ours, theirs = at(f"paired {key}"), at(f"baseline {key}")
        if ours is not None and theirs is not None:
            ratio = ours / theirs
            ok = ratio <= GOAL_SAME
            lines.append(
                f"| {key} / baseline {key} | {ratio:.2f}× | ≤ {GOAL_SAME}× "
                f"| {'pass' if ok else 'FAIL'} |"
            )
            verdicts.append({"command": f"{key} / baseline", "ratio": ratio, "pass": ok})
    if base is not None and warm is not None:
        ratio = warm / base
        ok = ratio <= GOAL_WARM_RATIO
        lines.append(
            f"| warm history / baseline history | {ratio:.2f}× | ≤ {GOAL_WARM_RATIO}× "
            f"| {'pass' if ok else 'FAIL'} |"
        )
        verdicts.append({"command": "warm / baseline history", "ratio": ratio, "pass": ok})
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 1,000-release registry")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (median)")
    parser.add_argument("--gto-runs", type=int, default=None, help="timed runs of gto commands")
    parser.add_argument("--regenerate", action="store_true", help="ignore the cache")
    parser.add_argument("--small", type=int, default=50, help="releases per model, small size")
    parser.add_argument("--large", type=int, default=500, help="releases per model, large size")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="a commit of this repository whose releasectl gives today's figures, "
        "measured in the same run (e.g. the last release)",
    )
    args = parser.parse_args(argv)
    if not Path(GTO).exists():
        log(f"{GTO} not found: install the bench extra (scripts/bootstrap bench)")
        return 2
    gto_runs = args.gto_runs or args.runs
    specs = [Spec(MODELS, args.small)] + ([] if args.quick else [Spec(MODELS, args.large)])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="releasectl-bench-") as scratch:
        baseline = baseline_cli(args.baseline, Path(scratch)) if args.baseline else None
        results = [
            bench_size(spec, args.runs, gto_runs, args.regenerate, Path(scratch), baseline)
            for spec in specs
        ]
    table, verdicts = report(results[0], results[1] if len(results) > 1 else None)
    shared, shared_verdicts = report_verified(results[-1])
    table += "\n\n" + shared
    verdicts += shared_verdicts
    print(table)
    doc = {
        "benchmark": "registry",
        "generator_version": GENERATOR_VERSION,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "git": results[0]["meta"]["git"],  # type: ignore[index]
        },
        "runs": args.runs,
        "gto_runs": gto_runs,
        "statistic": "median wall time of whole processes, after one warm-up run",
        "sizes": {str(r["meta"]["release_commits"]): r for r in results},  # type: ignore[index]
        "verdicts": verdicts,
        "table_markdown": table,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n")
    log(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
