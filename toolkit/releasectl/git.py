"""The one module that runs git (docs/ARCHITECTURE.md, "Layers"): small typed functions over
one subprocess wrapper; every failure names the command, its exit code and its output."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from releasectl.errors import BadInput, OperationFailed
from releasectl.trailers import REVERT_FROM, REVERT_TO

# No prompts, no editors, no pagers, stable messages to parse.
_ENV = {
    "GIT_EDITOR": "false",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
    "LANG": "C",
}


# Crash tests only: SIGKILL this process right after its N-th git command, so
# that a test can stop a write at any step and check what a later run makes
# of it (docs/ARCHITECTURE.md, "Landing a change").
# RELEASECTL_TEST_GIT_TRACE names a file that gets a line per git command, so
# a test can count them first.
_CRASH_AFTER = int(os.environ.get("RELEASECTL_TEST_CRASH_AFTER_GIT") or 0)
_TRACE = os.environ.get("RELEASECTL_TEST_GIT_TRACE")
_END = "--end-of-options"  # a value from a ref, a journal or a file is never an option
_calls = 0


def _after_call() -> None:
    global _calls
    _calls += 1
    if _TRACE:
        with open(_TRACE, "a") as trace:
            trace.write(f"{_calls}\n")
    if _CRASH_AFTER and _calls >= _CRASH_AFTER:
        os.kill(os.getpid(), signal.SIGKILL)


ZERO = "0" * 40  # "no commit": the parent of a first commit, the old value of a new ref

# A fetch, push or ls-remote is bounded (docs/ARCHITECTURE.md, "Errors by kind").
NETWORK_TIMEOUT_S = 120.0  # RELEASECTL_GIT_TIMEOUT (seconds) overrides


class GitError(OperationFailed):
    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        last = " / ".join(line for line in output.strip().splitlines()[-3:] if line)
        super().__init__(f"`git {' '.join(args)}` failed with exit code {returncode}: {last}")
        self.args_, self.returncode, self.output = list(args), returncode, output


class GitTimeout(GitError):
    """A network call that did not finish in time; it was stopped, with its children."""

    def __init__(self, args: Sequence[str], seconds: float) -> None:
        super().__init__(args, -signal.SIGKILL, "")
        self.message = f"`git {args[0]}` got no answer within {seconds:g} s and was stopped"
        self.hint = "check the remote; RELEASECTL_GIT_TIMEOUT sets the seconds"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Pending:
    args: tuple[str, ...]
    proc: subprocess.Popen[bytes]

    def out(self) -> str:
        stdout, stderr = self.texts()
        if self.proc.returncode != 0:
            raise GitError(self.args, self.proc.returncode, stderr + stdout)
        return stdout.strip()

    def texts(self) -> tuple[str, str]:
        """(stdout, stderr) as text, whatever the exit code."""
        raw_out, raw_err = self.proc.communicate()
        return _text(raw_out), _text(raw_err)


def _text(data: bytes) -> str:
    """git's output as text, as it is: no decode crash on what contributors
    wrote, and no newline translation (text mode would turn a "\r" inside a
    tagger's e-mail into a line break and split a record in two)."""
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Git:
    """A git working tree (or bare repository) at `cwd`."""

    cwd: Path
    config: tuple[str, ...] = ()  # extra `-c key=value` settings for every call

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> Result:
        proc = self._call(args, None if input is None else input.encode(), env, timeout)
        # Output holds what contributors wrote (messages, names, paths): never
        # a decode crash (_text). Blobs are read strictly by read_blob.
        stdout, stderr = _text(proc.stdout), _text(proc.stderr)
        if check and proc.returncode != 0:
            raise GitError(args, proc.returncode, stderr + stdout)
        return Result(proc.returncode, stdout, stderr)

    def raw(self, *args: str, input: bytes | None = None) -> bytes:
        """A command's output as bytes (an archive, a blob), or GitError."""
        proc = self._call(args, input, None)
        if proc.returncode != 0:
            raise GitError(args, proc.returncode, _text(proc.stderr))
        return proc.stdout

    def _call(
        self,
        args: Sequence[str],
        data: bytes | None,
        env: Mapping[str, str] | None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        argv, full_env = ["git", *_config_args(self), *args], _env(env)
        try:
            if timeout is not None:  # a network call: it takes no input
                return _bounded(argv, self.cwd, full_env, timeout)
            return subprocess.run(
                argv, cwd=self.cwd, input=data, capture_output=True, env=full_env, check=False
            )
        except subprocess.TimeoutExpired:
            raise GitTimeout(args, timeout or 0) from None
        finally:
            _after_call()

    def start(self, *args: str) -> Pending:
        """A read-only git command started now, collected with `.out()` later."""
        pipe, argv = subprocess.PIPE, ["git", *_config_args(self), *args]
        proc = subprocess.Popen(argv, cwd=self.cwd, stdout=pipe, stderr=pipe, env=_env())
        _after_call()
        return Pending(args, proc)

    def out(self, *args: str, **kwargs: object) -> str:
        return self.run(*args, **kwargs).stdout.strip()  # type: ignore[arg-type]

    def with_config(self, *settings: str) -> Git:
        return Git(self.cwd, self.config + tuple(settings))


def open_repo(path: Path | str = ".") -> Git:
    """The working tree containing `path`."""
    path = Path(path).resolve()
    top = Git(path).run("rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0:
        raise OperationFailed(f"{path} is not inside a git repository", "run `git init` first")
    return Git(Path(top.stdout.strip()))


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **_ENV, **(extra or {})}


@functools.cache
def git_dir(git: Git) -> Path:
    return Path(git.out("rev-parse", "--absolute-git-dir"))


def rev_parse(git: Git, rev: str) -> str | None:
    return git.out("rev-parse", "-q", "--verify", _END, f"{rev}^{{commit}}", check=False) or None


def current_branch(git: Git) -> str | None:
    return git.out("symbolic-ref", "-q", "--short", "HEAD", check=False) or None


def config_get(git: Git, key: str) -> str | None:
    return git.out("config", "--get", key, check=False) or None


def config_set(git: Git, key: str, value: str) -> None:
    """Set `key` in this repository's own config (.git/config)."""
    git.run("config", "--local", key, value)


def _decode(data: bytes, rev: str, path: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{path} at {rev[:12]} is not valid UTF-8 (byte {exc.start})", "save it as UTF-8"
        ) from None


def read_blob(git: Git, rev: str, path: str) -> str | None:
    """A file's text at `rev`; BadInput if it is not UTF-8."""
    proc = git._call(["cat-file", "blob", _END, f"{rev}:{path}"], None, None)
    return _decode(proc.stdout, rev, path) if proc.returncode == 0 else None


def _config_args(git: Git) -> list[str]:
    return [arg for setting in git.config for arg in ("-c", setting)]


def read_blobs(git: Git, specs: Sequence[str]) -> list[str | None]:
    """Many `rev:path` blobs in one `git cat-file --batch` call."""
    if not specs:
        return []
    data, pos = git.raw("cat-file", "--batch", input=("\n".join(specs) + "\n").encode()), 0
    out: list[str | None] = []
    for spec in specs:
        end = data.index(b"\n", pos)
        header = data[pos:end].decode().split()
        pos = end + 1
        if len(header) == 3 and header[1] == "blob":
            size = int(header[2])
            rev, _, path = spec.partition(":")
            out.append(_decode(data[pos : pos + size], rev, path))
            pos += size + 1
        else:  # another type, or "<spec> missing"
            pos += int(header[2]) + 1 if len(header) == 3 else 0
            out.append(None)
    return out


def tree_id(git: Git, rev: str, path: str) -> str | None:
    return git.out("rev-parse", "-q", "--verify", _END, f"{rev}:{path}", check=False) or None


def tree_entries(git: Git, rev: str, path: str) -> list[str]:
    """`<mode> <type> <object>\t<path>` of every file below `path` at `rev`."""
    out = git.run("ls-tree", "-r", "-z", "--full-tree", _END, rev, "--", path).stdout
    return [entry for entry in out.split("\0") if entry]


def for_each_ref(git: Git, patterns: Iterable[str], fields: Sequence[str]) -> Pending:
    """One `git for-each-ref` over `patterns` (started); `rows()` parses it."""
    return git.start("for-each-ref", "--format=" + "%00".join(fields), *patterns)


def rows(pending: Pending) -> list[list[str]]:
    # Lines end in "\n" only: a tagger may write "\r" or "\x1c" into a field,
    # which str.splitlines would also break on.
    return [line.split("\0") for line in pending.out().split("\n") if line]


def first_parent_commits(git: Git, rev: str, path: str) -> list[str]:
    """Commits on `rev`'s first-parent line that changed `path`, newest first."""
    return start_first_parent_commits(git, rev, path).out().split()


def start_first_parent_commits(git: Git, rev: str, path: str) -> Pending:
    return git.start("rev-list", "--first-parent", _END, rev, "--", path)


# One walk gives both the branch order and which commits are reverts.
_REVERT_TRAILERS = "%H%x00" + "%x00".join(
    f"%(trailers:key={key},valueonly,separator=%x2C)" for key in (REVERT_FROM, REVERT_TO)
)


def start_first_parent_log(git: Git, rev: str, path: str) -> Pending:
    """Like start_first_parent_commits, a line per commit: `<id>\0<from>\0<to>`,
    the revert trailers empty for a commit that is not a revert."""
    return git.start("log", "--first-parent", f"--format={_REVERT_TRAILERS}", _END, rev, "--", path)


def first_parent_changes(git: Git, rev: str, paths: Sequence[str]) -> list[str]:
    """Commits on `rev`'s first-parent line that changed any of `paths`,
    oldest first; a merge counts as a change against its first parent."""
    return git.out("rev-list", "--reverse", "--first-parent", _END, rev, "--", *paths).split()


def parent_counts(git: Git, commits: Sequence[str]) -> dict[str, int]:
    """How many parents each commit has (2+: a merge), in one call."""
    if not commits:
        return {}
    out = git.run("rev-list", "--no-walk", "--parents", "--stdin", input="\n".join(commits) + "\n")
    return {ids[0]: len(ids) - 1 for ids in map(str.split, out.stdout.splitlines()) if ids}


def last_change(git: Git, rev: str, path: str) -> str | None:
    """The commit that last changed `path` as seen from `rev` (following the
    side of a merge the content came from, as `git log` simplifies history)."""
    return git.out("log", "-1", "--format=%H", _END, rev, "--", path) or None


def last_change_on_branch(git: Git, rev: str, path: str) -> str | None:
    """The commit on `rev`'s first-parent line that last changed `path` (for a merged
    pull request, the merge commit itself, which descends from the earlier states)."""
    return git.out("log", "--first-parent", "-1", "--format=%H", _END, rev, "--", path) or None


def trailers(git: Git, commit: str) -> dict[str, list[str]]:
    """The trailers of a commit's message as git parses them: only its final
    paragraph, and only when that paragraph is a trailer block."""
    out = git.out("log", "-1", "--format=%(trailers:only,unfold)", _END, commit, "--")
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def dirty_paths(git: Git, path: str) -> list[str]:
    """Every path under `path` with uncommitted changes, whole: `-z` leaves names
    unquoted and unsplit (spaces, non-ASCII), and a rename names both sides."""
    out = git.run("status", "--porcelain", "-z", "--untracked-files=all", "--", path).stdout
    entries = iter(out.split("\0"))
    paths: list[str] = []
    for entry in entries:
        paths.append(entry[3:])
        if "R" in entry[:2] or "C" in entry[:2]:
            # -z: a rename or copy is followed by its source, in an entry of its own.
            paths.append(next(entries, ""))
    return [p for p in paths if p]


def is_ancestor(git: Git, ancestor: str, descendant: str) -> bool:
    args = ("merge-base", "--is-ancestor", _END, ancestor, descendant)
    return git.run(*args, check=False).returncode == 0


def write_tree_with(
    git: Git,
    base: str,
    folder: str,
    folder_tree: str | None,
    files: Mapping[str, str],
    trees: Sequence[tuple[str, str | None]] = (),
) -> str:
    """The tree of `base` with `folder` replaced by `folder_tree` (if given),
    each folder of `trees` replaced by its tree (None: removed), and `files`
    (path -> text) written on top, built in a private index so the user's
    index and working tree are untouched until the commit lands."""
    index = git_dir(git) / f"releasectl-index-{os.getpid()}"
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        git.run("read-tree", *(["--empty"] if base == ZERO else [base]), env=env)
        replaced = [(folder, folder_tree)] if folder_tree is not None else []
        for path, tree in [*replaced, *trees]:
            # -f: a private index; the user's HEAD and working tree are not its business.
            git.run("rm", "-r", "-q", "-f", "--cached", "--ignore-unmatch", "--", path, env=env)
            if tree is not None:
                git.run("read-tree", f"--prefix={path}/", tree, env=env)
        for path, text in files.items():
            blob = git.out("hash-object", "-w", "--stdin", input=text)
            git.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        return git.out("write-tree", env=env)
    finally:
        index.unlink(missing_ok=True)


def commit_tree(git: Git, tree: str, parents: Sequence[str], message: str, sign: bool) -> str:
    flags = [a for p in parents if p != ZERO for a in ("-p", p)] + (["-S"] if sign else [])
    return git.out("commit-tree", tree, *flags, "-F", "-", input=message)


def update_ref(git: Git, ref: str, new: str, old: str, reason: str) -> bool:
    """Compare-and-swap `ref` from `old` to `new`; False if it had moved."""
    return git.run("update-ref", "-m", reason, ref, new, old, check=False).returncode == 0


def delete_refs(git: Git, refs: Sequence[str]) -> None:
    """Delete refs in one `update-ref --stdin` (names on stdin, never argv)."""
    if refs:
        git.run("update-ref", "--stdin", input="".join(f"delete {ref}\n" for ref in refs))


def create_signed_tag(git: Git, name: str, target: str, message: str) -> None:
    git.run("tag", "-s", "-m", message, name, target)


def delete_tag(git: Git, name: str) -> None:
    git.run("tag", "-d", name, check=False)


def git_object(git: Git, ref: str) -> str | None:
    """The object a ref names (a tag object for an annotated tag), unpeeled."""
    return git.out("rev-parse", "-q", "--verify", _END, ref, check=False) or None


def tag_exists(git: Git, name: str) -> bool:
    return git.run("rev-parse", "-q", "--verify", f"refs/tags/{name}", check=False).returncode == 0


def sync_worktree(git: Git, rev: str, path: str) -> None:
    """Make index and working tree of `path` equal `rev` (removing files it lacks)."""
    git.run("checkout", "--no-overlay", rev, "--", path)


def upstream(git: Git, branch: str) -> tuple[str, str]:
    """(remote, remote branch) that `branch` pushes to; origin/<branch> by default."""
    remote = config_get(git, f"branch.{branch}.remote") or "origin"
    merge = config_get(git, f"branch.{branch}.merge") or f"refs/heads/{branch}"
    return remote, merge.removeprefix("refs/heads/")


def remote_refs(git: Git, remote: str, patterns: Sequence[str]) -> dict[str, str]:
    """refname -> object id of the remote's refs matching `patterns` (one round
    trip). The remote's name may come from a file (the landing journal): after
    `--` it can never be read as an option (docs/ARCHITECTURE.md, "Trust")."""
    out = _network(git, "ls-remote", "--refs", "--", remote, *patterns).stdout
    return {ref: oid for oid, _, ref in (line.partition("\t") for line in out.splitlines()) if ref}


def fetch(git: Git, remote: str, refspecs: Sequence[str]) -> None:
    _network(git, "fetch", "--quiet", "--no-tags", "--", remote, *refspecs)


def push(git: Git, remote: str, refspecs: Sequence[str]) -> Result:
    """An atomic push: every ref or none. Never forced. GitTimeout if it hangs."""
    return _network(git, "push", "--atomic", "--porcelain", "--", remote, *refspecs, check=False)


def _network(git: Git, *args: str, check: bool = True) -> Result:
    """A call that reaches a remote: bounded, and its ssh (the user's, options added;
    a GIT_SSH program is run as it is) in batch mode with a connect timeout."""
    raw = os.environ.get("RELEASECTL_GIT_TIMEOUT") or str(NETWORK_TIMEOUT_S)
    timeout = float(raw) if re.fullmatch(r"[0-9]+(\.[0-9]*)?", raw) else 0.0
    if not 0 < timeout < 1e9:
        raise BadInput(f"RELEASECTL_GIT_TIMEOUT={raw!r} is not a number of seconds", "e.g. 120")
    ssh = os.environ.get("GIT_SSH_COMMAND") or (
        "" if "GIT_SSH" in os.environ else config_get(git, "core.sshCommand") or "ssh"
    )
    options = f" -o BatchMode=yes -o ConnectTimeout={max(1, min(30, round(timeout)))}"
    env = {"GIT_SSH_COMMAND": ssh + options} if ssh else {}
    return git.run(*args, env=env, check=check, timeout=timeout)


def _bounded(
    argv: list[str], cwd: Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """`argv` in a process group of its own, all of it killed at `timeout` or on an
    interruption: receive-pack, its hooks and ssh would outlive git alone."""
    pipe = subprocess.PIPE
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, process_group=0
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def export_tree(git: Git, rev: str, path: str, dest: Path) -> Path:
    """`path` as it is at `rev`, written into `dest` (never the working tree): `dest/path`."""
    import io
    import tarfile

    check_symlinks(git, rev, path)
    archive = git.raw("archive", "--format=tar", rev, "--", path)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError as exc:  # the net under check_symlinks
            raise BadInput(f"{path} at {rev[:12]}: {exc}") from None
    return dest / path


def check_symlinks(git: Git, rev: str, path: str) -> None:
    """Refuse a symlink below `path` that is absolute or points outside `path`:
    git stores symlinks, and a build must never read beyond the folder it builds."""
    import posixpath

    links = [
        entry.split("\t", 1)
        for entry in git.run("ls-tree", "-r", "-z", _END, rev, "--", path).stdout.split("\0")
        if entry.startswith("120000 ")
    ]
    for meta, name in links:
        target = _decode(git.raw("cat-file", "blob", meta.split()[2]), rev, name)
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if posixpath.isabs(target) or not (inside + "/").startswith(path.rstrip("/") + "/"):
            raise BadInput(
                f"{name} at {rev[:12]} is a symlink to {target!r}, outside {path}/",
                "commit the file itself, or a link that stays inside the folder",
            )


def unborn_head(git: Git) -> OperationFailed | None:
    """When HEAD has no commit (an empty repository, or a clone that checked
    nothing out): the one line that says so and what to do; else None."""
    if rev_parse(git, "HEAD") is not None:
        return None
    branch = current_branch(git) or "HEAD"
    short = "--format=%(refname:short)"
    listed = git.out("for-each-ref", short, "refs/heads", "refs/remotes", check=False).split()
    others = [ref for ref in listed if not ref.endswith("/HEAD") and ref != "origin"]
    if others:
        local = git.out("for-each-ref", short, "refs/heads", check=False).split()
        name = others[0] if others[0] in local else others[0].split("/", 1)[-1]
        return OperationFailed(
            f"{branch} has no commits yet (HEAD is unborn; this repository has {others[0]})",
            f"check out a branch that has commits: git checkout {name}",
        )
    return OperationFailed(
        f"this repository has no commits yet ({branch} is unborn)",
        "run `releasectl init` to set it up as a registry, or `git pull` when its remote "
        "has commits",
    )
