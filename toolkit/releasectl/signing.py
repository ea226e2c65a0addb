"""Signatures and the trust root.

Signing goes through git's own configuration (`gpg.format`, `user.signingkey`);
every signature releasectl makes is verified right after it is made.

The trust root is `.releasectl/allowed_signers` (SSH, git's allowed-signers
format) plus `.releasectl/allowed_openpgp` (`<email> <fingerprint>` lines), or
files named by RELEASECTL_ALLOWED_SIGNERS / RELEASECTL_ALLOWED_OPENPGP (CI).
A change to the in-repository files counts only if the commit making it is
signed by a key trusted before it, so a commit that adds its own key does not
verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from releasectl import git as g
from releasectl.errors import OperationFailed

SSH_FILE = ".releasectl/allowed_signers"
OPENPGP_FILE = ".releasectl/allowed_openpgp"
ENV_SSH = "RELEASECTL_ALLOWED_SIGNERS"
ENV_OPENPGP = "RELEASECTL_ALLOWED_OPENPGP"

_SSH_GOOD = re.compile(r'Good "git" signature for (\S+) with (\S+) key (\S+)')
_GPG_VALID = re.compile(r"^\[GNUPG:\] VALIDSIG (\S+)(?: \S+){8} (\S+)", re.M)
_GPG_VALID_SHORT = re.compile(r"^\[GNUPG:\] VALIDSIG (\S+)", re.M)


@dataclass(frozen=True)
class TrustRoot:
    ssh: str  # allowed-signers text
    openpgp: dict[str, frozenset[str]] = field(default_factory=dict)  # email -> fingerprints
    source: str = SSH_FILE

    def ssh_file(self, git: g.Git) -> Path:
        """git wants the allowed signers as a file: a content-addressed one in .git."""
        digest = hashlib.sha256(self.ssh.encode()).hexdigest()[:16]
        git_dir = _git_dir(git)
        path = git_dir / "releasectl" / f"allowed_signers-{digest}"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(self.ssh)
            tmp.replace(path)
        return path

    def verifier(self, git: g.Git) -> g.Git:
        # minTrustLevel=undefined: we judge the principal ourselves, for both formats.
        return git.with_config(
            f"gpg.ssh.allowedSignersFile={self.ssh_file(git)}", "gpg.minTrustLevel=undefined"
        )

    @property
    def key(self) -> str:
        """Identifies this trust root's content (for remembering verdicts)."""
        pgp = sorted((k, sorted(v)) for k, v in self.openpgp.items())
        return hashlib.sha256(repr((self.ssh, pgp)).encode()).hexdigest()

    def allows_openpgp(self, email: str, fingerprints: Sequence[str]) -> bool:
        allowed = self.openpgp.get(email.lower(), frozenset())
        return any(fp.upper() in allowed for fp in fingerprints if fp)


_OBJECT_ID = re.compile(r"[0-9a-f]{40}")
# Verdicts on immutable objects (commit and tag ids) under one trust root, for
# the life of the process: `revert --deploy` checks the same release twice.
_verified: dict[tuple[str, ...], SignatureVerdict] = {}


@dataclass(frozen=True)
class SignatureVerdict:
    ok: bool
    signer: str | None  # the principal the signature proves, when it proves one
    reason: str  # why not, or how


def _git_dir(git: g.Git) -> Path:
    return g.git_dir(git)


def parse_openpgp(text: str) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        email, _, fingerprint = line.partition(" ")
        out.setdefault(email.lower(), set()).add(fingerprint.strip().replace(" ", "").upper())
    return {k: frozenset(v) for k, v in out.items()}


def trust_root(git: g.Git, rev: str = "HEAD") -> TrustRoot:
    """The allowed signers in force at `rev`: an override from the environment,
    or the repository's files as far as each change to them was signed by a key
    trusted before that change."""
    override = os.environ.get(ENV_SSH)
    if override:
        pgp = os.environ.get(ENV_OPENPGP)
        return TrustRoot(
            _read_override(override),
            parse_openpgp(_read_override(pgp)) if pgp else {},
            source=override,
        )
    commit = g.rev_parse(git, rev)
    # "trust-fp": roots walked along the first parent only; an older cache
    # may hold roots that a side branch brought in.
    cache = g.git_dir(git) / "releasectl" / "trust-fp" / (commit or "none")
    if commit is not None and cache.exists():
        # Derived from immutable history alone, so it is cached per commit.
        doc = json.loads(cache.read_text())
        return TrustRoot(doc["ssh"], parse_openpgp(doc["openpgp"]))
    trusted, pgp_text = _walk_trust(git, rev)
    if commit is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"ssh": trusted.ssh, "openpgp": pgp_text}))
        tmp.replace(cache)
    return trusted


def _walk_trust(git: g.Git, rev: str) -> tuple[TrustRoot, str]:
    # The first parent only (docs/ARCHITECTURE.md, "Trust"): a merge that brings
    # the files in from another history is itself a change, judged like any other.
    changes = g.first_parent_changes(git, rev, [SSH_FILE, OPENPGP_FILE])
    if not changes:
        raise OperationFailed(
            f"no trust root: {SSH_FILE} is not in the repository at {rev}",
            f"run `releasectl init`, or set {ENV_SSH}",
        )
    first = changes[0]
    ssh_text, pgp_text = g.read_blobs(git, [f"{first}:{SSH_FILE}", f"{first}:{OPENPGP_FILE}"])
    trusted = TrustRoot(ssh_text or "", parse_openpgp(pgp_text or ""))
    trusted_pgp = pgp_text or ""
    for commit in changes[1:]:
        # A change is accepted only if a key trusted before it signed it.
        if check_commits(git, trusted, [commit])[commit].ok:
            ssh_text, pgp_text = g.read_blobs(
                git, [f"{commit}:{SSH_FILE}", f"{commit}:{OPENPGP_FILE}"]
            )
            trusted = TrustRoot(ssh_text or "", parse_openpgp(pgp_text or ""))
            trusted_pgp = pgp_text or ""
    return trusted, trusted_pgp


def _read_override(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise OperationFailed(f"cannot read the trust root {path}: {exc.strerror}") from None


def check_commits(
    git: g.Git, trust: TrustRoot, commits: Sequence[str]
) -> dict[str, SignatureVerdict]:
    """Verify commits' signatures in one `git log` call: good, and by an allowed
    principal equal to the committer's e-mail."""
    if not commits:
        return {}
    known = {c: _verified[(trust.key, c)] for c in commits if (trust.key, c) in _verified}
    commits = [c for c in commits if c not in known]
    if not commits:
        return known
    out = trust.verifier(git).out(
        "log", "--no-walk=unsorted", "--format=%H%x00%ce%x00%G?%x00%GS%x00%GF%x00%GP%x00", *commits
    )
    verdicts: dict[str, SignatureVerdict] = {}
    for record in out.split("\0\n"):
        fields = record.strip("\n").split("\0")
        if len(fields) < 6:
            continue
        sha, email, status, signer, fpr, primary = fields[:6]
        verdicts[sha] = _judge(trust, status, signer, email, [fpr, primary])
    for commit in commits:
        verdicts.setdefault(commit, SignatureVerdict(False, None, "commit not found"))
        _verified[(trust.key, commit)] = verdicts[commit]
    return {**known, **verdicts}


def _judge(
    trust: TrustRoot, status: str, signer: str, email: str, fprs: list[str]
) -> SignatureVerdict:
    if status == "N":
        return SignatureVerdict(False, None, "not signed")
    if status not in ("G", "U"):
        return SignatureVerdict(False, None, f"bad or unverifiable signature (git status {status})")
    # git reports an SSH key's fingerprint as "SHA256:…": only then is the
    # signer a principal of the allowed-signers file. For OpenPGP, %GS is the
    # key's user id, which anyone can choose; only a listed fingerprint counts.
    ssh = fprs[0].startswith("SHA256:")
    if ssh and status == "G" and signer == email:
        return SignatureVerdict(True, signer, "good SSH signature by an allowed signer")
    if not ssh and trust.allows_openpgp(email, fprs):
        return SignatureVerdict(True, email, "good OpenPGP signature by an allowed key")
    if not ssh:
        return SignatureVerdict(
            False, None, "signed by an OpenPGP key not allowed for its committer"
        )
    if status == "G" and signer and signer != email:
        return SignatureVerdict(False, signer, f"signed by {signer}, not by its committer {email}")
    return SignatureVerdict(False, None, "signed by a key that is not in the allowed signers")


def check_tag(git: g.Git, trust: TrustRoot, ref: str, tagger_email: str) -> SignatureVerdict:
    """A tag's signature: good, and by an allowed principal equal to its tagger.
    Given a tag object's id (immutable), the verdict is remembered."""
    memo = (trust.key, ref, tagger_email) if _OBJECT_ID.fullmatch(ref) else None
    if memo in _verified:
        return _verified[memo]
    verdict = _check_tag(git, trust, ref, tagger_email)
    if memo is not None:
        _verified[memo] = verdict
    return verdict


_running: dict[tuple[str, ...], g.Pending] = {}


def start_tag_checks(git: g.Git, trust: TrustRoot, tags: Sequence[tuple[str, str]]) -> None:
    """Start `git verify-tag` for several tag objects at once; `check_tag`
    collects them (two cores: the ssh-keygen runs overlap)."""
    for obj, tagger in tags:
        memo = (trust.key, obj, tagger)
        if memo not in _verified and memo not in _running:
            _running[memo] = trust.verifier(git).start("verify-tag", "--raw", obj)


def _check_tag(git: g.Git, trust: TrustRoot, ref: str, tagger_email: str) -> SignatureVerdict:
    pending = _running.pop((trust.key, ref, tagger_email), None)
    if pending is not None:
        stdout, stderr = pending.texts()
        text = stderr + stdout
    else:
        result = trust.verifier(git).run("verify-tag", "--raw", ref, check=False)
        text = result.stderr + result.stdout
    if "no signature found" in text:
        return SignatureVerdict(False, None, "not signed")
    ssh = _SSH_GOOD.search(text)
    if ssh:
        principal = ssh.group(1)
        if principal != tagger_email:
            return SignatureVerdict(
                False, principal, f"signed by {principal}, not by its tagger {tagger_email}"
            )
        return SignatureVerdict(True, principal, "good SSH signature by an allowed signer")
    gpg = _GPG_VALID.search(text) or _GPG_VALID_SHORT.search(text)
    if gpg and "[GNUPG:] GOODSIG" in text:
        if trust.allows_openpgp(tagger_email, list(gpg.groups())):
            return SignatureVerdict(True, tagger_email, "good OpenPGP signature by an allowed key")
        return SignatureVerdict(
            False, None, "signed by an OpenPGP key that is not allowed for its tagger"
        )
    if 'Good "git" signature with' in text:
        return SignatureVerdict(False, None, "signed by a key that is not in the allowed signers")
    return SignatureVerdict(False, None, "bad signature")


def signing_format(git: g.Git) -> str:
    return (g.config_get(git, "gpg.format") or "openpgp").lower()


def check_signing_key(git: g.Git) -> None:
    """Fail early, before anything is written, when no usable key is configured."""
    fmt = signing_format(git)
    key = g.config_get(git, "user.signingkey")
    if fmt == "ssh":
        if not key:
            raise OperationFailed(
                "no signing key: user.signingkey is not set",
                "git config user.signingkey ~/.ssh/id_ed25519 (and gpg.format ssh)",
            )
        if key.startswith(("key::", "ssh-")):
            return  # a literal public key: the agent holds the private half
        path = Path(os.path.expanduser(key))
        if not path.is_absolute():
            path = git.cwd / path
        try:
            path.read_bytes()
        except OSError as exc:
            raise OperationFailed(
                f"signing key {key} cannot be read: {exc.strerror}",
                "check user.signingkey",
            ) from None
        private = path.with_suffix("") if path.suffix == ".pub" else path
        if private.exists() and private.stat().st_mode & 0o077:
            raise OperationFailed(
                f"signing key {private} is readable by others; ssh-keygen will refuse it",
                f"chmod 600 {private}",
            )
    elif fmt == "openpgp" and not key and not g.config_get(git, "user.email"):
        raise OperationFailed("no signing key: set user.signingkey or user.email")


def public_identity(git: g.Git) -> tuple[str, str]:
    """("ssh", "<type> <base64>") or ("openpgp", "<FINGERPRINT>") for the
    configured signing key, to write into the trust root."""
    import subprocess

    check_signing_key(git)
    key = g.config_get(git, "user.signingkey") or ""
    if signing_format(git) == "ssh":
        if key.startswith("key::"):
            return "ssh", key.removeprefix("key::").strip()
        if key.startswith("ssh-"):
            return "ssh", key.strip()
        path = Path(os.path.expanduser(key))
        if not path.is_absolute():
            path = git.cwd / path
        public = path if path.suffix == ".pub" else path.with_name(path.name + ".pub")
        if public.exists():
            text = public.read_text()
        else:
            proc = subprocess.run(
                ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise OperationFailed(
                    f"cannot read the public half of {path}: {proc.stderr.strip()}"
                )
            text = proc.stdout
        parts = text.split()
        return "ssh", " ".join(parts[:2])
    who = key or g.config_get(git, "user.email") or ""
    proc = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--fingerprint", "--", who],
        capture_output=True,
        text=True,
        check=False,
    )
    fprs = [line.split(":")[9] for line in proc.stdout.splitlines() if line.startswith("fpr:")]
    if proc.returncode != 0 or not fprs:
        raise OperationFailed(f"no OpenPGP key found for {who!r}", "check user.signingkey")
    return "openpgp", fprs[0]
