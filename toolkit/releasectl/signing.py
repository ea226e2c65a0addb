"""Signatures and the trust root: makes and checks signatures (docs/ARCHITECTURE.md,
"Trust").

Signing goes through git's own configuration (`gpg.format`, `user.signingkey`);
every signature releasectl makes is verified right after it is made.

The trust root is `.releasectl/allowed_signers` (SSH, git's allowed-signers
format) plus `.releasectl/allowed_openpgp` (`<email> <fingerprint>` lines), or
files named by RELEASECTL_ALLOWED_SIGNERS / RELEASECTL_ALLOWED_OPENPGP (CI).
Which keys are in force at a commit (the roles, read from history) is
`releasectl.view`'s: this module only makes and checks signatures.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from releasectl import git as g
from releasectl.errors import OperationFailed, Refused
from releasectl.files import write_atomic
from releasectl.verdict import Verdict

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
            write_atomic(path, self.ssh, durable=False)  # content-addressed: rebuilt if lost
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
_verified: dict[tuple[str, ...], Verdict] = {}


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


def commit_verdicts(git: g.Git, trust: TrustRoot, commits: Sequence[str]) -> dict[str, Verdict]:
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
    verdicts: dict[str, Verdict] = {}
    for record in out.split("\0\n"):
        fields = record.strip("\n").split("\0")
        if len(fields) < 6:
            continue
        sha, email, status, signer, fpr, primary = fields[:6]
        verdicts[sha] = _judge(trust, status, signer, email, [fpr, primary])
    for commit in commits:
        verdicts.setdefault(commit, Verdict.bad("commit not found", reached=False))
        if verdicts[commit].reached:
            _verified[(trust.key, commit)] = verdicts[commit]
    return {**known, **verdicts}


def _judge(trust: TrustRoot, status: str, signer: str, email: str, fprs: list[str]) -> Verdict:
    if status == "N":
        return Verdict.bad("not signed")
    if status not in ("G", "U"):
        reached = status not in ("B", "E")
        return Verdict.bad(f"bad or unverifiable signature (git status {status})", reached=reached)
    # git reports an SSH key's fingerprint as "SHA256:…": only then is the
    # signer a principal of the allowed-signers file. For OpenPGP, %GS is the
    # key's user id, which anyone can choose; only a listed fingerprint counts.
    ssh = fprs[0].startswith("SHA256:")
    if ssh and status == "G" and signer == email:
        return Verdict.good("good SSH signature by an allowed signer", signer=signer)
    if not ssh and trust.allows_openpgp(email, fprs):
        return Verdict.good("good OpenPGP signature by an allowed key", signer=email)
    if not ssh:
        return Verdict.bad("signed by an OpenPGP key not allowed for its committer")
    if status == "G" and signer and signer != email:
        return Verdict.bad(f"signed by {signer}, not by its committer {email}", signer=signer)
    return Verdict.bad("signed by a key that is not in the allowed signers")


def tag_verdict(git: g.Git, trust: TrustRoot, ref: str, tagger_email: str) -> Verdict:
    """A tag's signature: good, and by an allowed principal equal to its tagger.
    Given a tag object's id (immutable), the verdict is remembered."""
    memo = (trust.key, ref, tagger_email) if _OBJECT_ID.fullmatch(ref) else None
    if memo in _verified:
        return _verified[memo]
    verdict = _check_tag(git, trust, ref, tagger_email)
    if memo is not None and verdict.reached:
        _verified[memo] = verdict
    return verdict


_running: dict[tuple[str, ...], g.Pending] = {}


def start_tag_checks(git: g.Git, trust: TrustRoot, tags: Sequence[tuple[str, str]]) -> None:
    """Start `git verify-tag` for several tag objects at once; `tag_verdict`
    collects them (two cores: the ssh-keygen runs overlap)."""
    for obj, tagger in tags:
        memo = (trust.key, obj, tagger)
        if memo not in _verified and memo not in _running:
            _running[memo] = trust.verifier(git).start("verify-tag", "--raw", obj)


def _check_tag(git: g.Git, trust: TrustRoot, ref: str, tagger_email: str) -> Verdict:
    pending = _running.pop((trust.key, ref, tagger_email), None)
    if pending is not None:
        stdout, stderr = pending.texts()
        text = stderr + stdout
    else:
        result = trust.verifier(git).run("verify-tag", "--raw", ref, check=False)
        text = result.stderr + result.stdout
    if "no signature found" in text:
        return Verdict.bad("not signed")
    ssh = _SSH_GOOD.search(text)
    if ssh:
        principal = ssh.group(1)
        if principal != tagger_email:
            return Verdict.bad(
                f"signed by {principal}, not by its tagger {tagger_email}", signer=principal
            )
        return Verdict.good("good SSH signature by an allowed signer", signer=principal)
    gpg = _GPG_VALID.search(text) or _GPG_VALID_SHORT.search(text)
    if gpg and "[GNUPG:] GOODSIG" in text:
        if trust.allows_openpgp(tagger_email, list(gpg.groups())):
            return Verdict.good("good OpenPGP signature by an allowed key", signer=tagger_email)
        return Verdict.bad("signed by an OpenPGP key that is not allowed for its tagger")
    if 'Good "git" signature with' in text:
        return Verdict.bad("signed by a key that is not in the allowed signers")
    return Verdict.bad("bad signature", reached=False)


def signing_format(git: g.Git) -> str:
    return (g.config_get(git, "gpg.format") or "openpgp").lower()


@dataclass(frozen=True)
class _Setup:
    """The settings signing reads (`gpg.format`, `user.signingkey`,
    `user.email`), read together: one git process, not one per setting."""

    fmt: str
    key: str | None
    email: str | None


_SETUP_KEYS = ("gpg.format", "user.signingkey", "user.email")


def _setup(git: g.Git) -> _Setup:
    # `--get-regexp` names keys in lower case; the last value wins, as with `--get`.
    pattern = "^(" + "|".join(k.replace(".", "\\.") for k in _SETUP_KEYS) + ")$"
    result = git.run("config", "--null", "--get-regexp", pattern, check=False)
    found: dict[str, str] = {}
    for entry in result.stdout.split("\0"):
        name, _, value = entry.partition("\n")
        if name:
            found[name] = value.strip()
    return _Setup(
        (found.get("gpg.format") or "openpgp").lower(),
        found.get("user.signingkey") or None,
        found.get("user.email") or None,
    )


def check_signing_key(git: g.Git, setup: _Setup | None = None) -> None:
    """Fail early, before anything is written, when no usable key is configured."""
    setup = setup or _setup(git)
    fmt, key = setup.fmt, setup.key
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
    elif fmt == "openpgp" and not key and not setup.email:
        raise OperationFailed("no signing key: set user.signingkey or user.email")


def public_identity(git: g.Git) -> tuple[str, str]:
    """("ssh", "<type> <base64>") or ("openpgp", "<FINGERPRINT>") for the
    configured signing key, to write into the trust root."""
    setup = _setup(git)
    check_signing_key(git, setup)
    kind, key = _identity(git, setup, ask=True)
    return kind, key.split()[0] if kind == "openpgp" else key


def _identity(git: g.Git, setup: _Setup, *, ask: bool) -> tuple[str, str]:
    """The configured key's public identity: an SSH public key, or every
    fingerprint of the OpenPGP key, space-separated (a subkey may be the one
    that signs). `ask`: ssh-keygen may prompt for a passphrase; otherwise it
    must not, and a key that needs one is an OperationFailed."""
    import subprocess

    key = setup.key or ""
    if setup.fmt == "ssh":
        if key.startswith(("key::", "ssh-")):
            return "ssh", key.removeprefix("key::").strip()
        path = Path(os.path.expanduser(key))
        path = path if path.is_absolute() else git.cwd / path
        public = path if path.suffix == ".pub" else path.with_name(path.name + ".pub")
        if public.exists():
            text = public.read_text()
        else:
            quiet = [] if ask else ["-P", ""]
            proc = subprocess.run(
                ["ssh-keygen", "-y", *quiet, "-f", str(path)],
                capture_output=True,
                text=True,
                check=False,
                stdin=None if ask else subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                raise OperationFailed(
                    f"cannot read the public half of {path}: {proc.stderr.strip()}"
                )
            text = proc.stdout
        parts = text.split()
        if len(parts) < 2:
            raise OperationFailed(f"no public key in {public}")
        return "ssh", " ".join(parts[:2])
    who = key or setup.email or ""
    proc = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--fingerprint", "--", who],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    fprs = [line.split(":")[9] for line in proc.stdout.splitlines() if line.startswith("fpr:")]
    if proc.returncode != 0 or not fprs:
        raise OperationFailed(f"no OpenPGP key found for {who!r}", "check user.signingkey")
    return "openpgp", " ".join(fprs)


def require_allowed_signer(git: g.Git, trust: TrustRoot) -> None:
    """Refuse (exit 3) before anything is built or written when the configured
    signing key is surely not allowed to sign for user.email under `trust`:
    what the check of the new signature would refuse afterwards
    (docs/ARCHITECTURE.md, "Trust"). Only a certain answer refuses; a key
    whose public half cannot be read without a passphrase is left to that
    check."""
    setup = _setup(git)
    email = os.environ.get("GIT_COMMITTER_EMAIL") or setup.email
    if not email:
        return
    identity = _public_identity_quietly(git, setup)
    if identity is None:
        return
    kind, key = identity
    if kind == "openpgp":
        if trust.allows_openpgp(email, key.split()):
            return
        raise Refused(
            f"the signing key {key.split()[0]} is not in the trust root for {email} "
            f"({trust.source}): its signatures would not verify",
            f"have an admin add it to {OPENPGP_FILE}, or set user.signingkey to an allowed key",
        )
    if _ssh_allowed(trust.ssh, email, key):
        return
    raise Refused(
        f"the signing key {key.split()[0]} …{key[-8:]} is not in the trust root for {email} "
        f"({trust.source}): its signatures would not verify",
        f"have an admin add it to {SSH_FILE}, or set user.signingkey to an allowed key",
    )


def _ssh_allowed(allowed: str, email: str, key: str) -> bool:
    """Whether an allowed-signers line may name `key` for `email` (patterns
    and certificate authorities count as may: only a certain no refuses)."""
    import fnmatch

    blob = key.split()[1] if len(key.split()) > 1 else key
    for line in allowed.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if any("cert-authority" in field for field in fields[1:-2]):
            return True
        if blob not in fields[1:]:
            continue
        for principal in fields[0].split(","):
            negated = principal.startswith("!")
            if not negated and fnmatch.fnmatchcase(email, principal.strip('"')):
                return True
    return False


def _public_identity_quietly(git: g.Git, setup: _Setup) -> tuple[str, str] | None:
    """`_identity` without asking, or None when it cannot be known that way
    (an encrypted key without its .pub, no gpg): only a certain no refuses."""
    if not (setup.key or setup.fmt != "ssh"):
        return None
    try:
        return _identity(git, setup, ask=False)
    except (OperationFailed, OSError):
        return None


def signers_copy(git: g.Git) -> Path:
    """The verified trust root's SSH signers at HEAD, under a stable name in
    .git, for git's own `gpg.ssh.allowedSignersFile` (`git log
    --show-signature`): `init` points git at it, and releasectl keeps it equal
    to what it verified at HEAD (docs/ARCHITECTURE.md, "Trust"). Never the
    working-tree file, which anyone can edit."""
    return _git_dir(git) / "releasectl" / "allowed_signers"


def write_signers_copy(git: g.Git, trust: TrustRoot) -> Path:
    path = signers_copy(git)
    if not path.exists() or path.read_text() != trust.ssh:
        write_atomic(path, trust.ssh, durable=False)  # a copy, refreshed from the walk
    return path


def refresh_signers_copy(git: g.Git, trust: TrustRoot) -> None:
    """Keep the copy git reads in step with HEAD's verified trust root, once
    `init` made it (a stat when it did not)."""
    if signers_copy(git).exists():
        write_signers_copy(git, trust)
