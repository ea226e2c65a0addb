"""`releasectl trust add|remove|adopt`: the signed commits that change the
roles (docs/ARCHITECTURE.md, "Trust").

Each is one commit signed by a key of the role that owns the file it
changes (an admin for everything under `.releasectl/`), checked before
anything is written: a signer who may not make the change is refused (exit
3). With `push`, the commit goes to the branch's upstream, never forced."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from releasectl import git as g
from releasectl import view
from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.registry.landing import Change, head, land_local, require_branch, require_clean
from releasectl.signing import SSH_FILE, TrustRoot, public_identity, signing_format

ROLE_FILES = {view.RELEASE: SSH_FILE, view.ADMIN: view.ADMINS_FILE}
_EMAIL = re.compile(r"[^\s@\"',]+@[^\s@\"',]+")
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-", "sk-ssh-ed25519@", "sk-ecdsa-sha2-")


@dataclass(frozen=True)
class TrustChange:
    action: str  # add, remove, adopt
    path: str  # the file changed (or adopted)
    role: str
    message: str
    changed: bool  # False: nothing to do (the key is already there, or not there)
    commit: str | None = None
    pushed_to: str | None = None


def parse_key(key_or_file: str) -> str:
    """`<type> <base64>` from a public key, given as text or as a .pub file."""
    path = Path(key_or_file).expanduser()
    text = key_or_file
    if not key_or_file.startswith(_KEY_TYPES) and path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read the public key {key_or_file}: {exc}") from None
    parts = text.split()
    if len(parts) < 2 or not parts[0].startswith(_KEY_TYPES):
        raise BadInput(
            f"{key_or_file!r} is not an SSH public key",
            "pass the key (`ssh-ed25519 AAAA…`) or its .pub file",
        )
    try:
        base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{key_or_file!r}: the key's body is not base64") from None
    return f"{parts[0]} {parts[1]}"


def check_email(email: str) -> str:
    if not _EMAIL.fullmatch(email):
        raise BadInput(f"{email!r} is not an e-mail address", "pass --email name@example.com")
    return email


def _role(role: str) -> str:
    if role not in ROLE_FILES:
        raise BadInput(f"unknown role {role!r}", "use --role release or --role admin")
    return role


def _lines(text: str | None) -> list[str]:
    return [line for line in (text or "").splitlines() if line.strip()]


def _entry(line: str) -> tuple[str, str]:
    """(principal, `<type> <base64>`) of an allowed-signers line."""
    parts = line.split()
    key_at = next((i for i, p in enumerate(parts) if p.startswith(_KEY_TYPES)), len(parts))
    body = parts[key_at + 1] if key_at + 1 < len(parts) else ""
    return (parts[0] if parts else "", f"{parts[key_at] if key_at < len(parts) else ''} {body}")


def _require_signer(git: g.Git, trust: TrustRoot, path: str, role: str) -> None:
    """Refused unless the configured signing key belongs to `role`."""
    email = g.config_get(git, "user.email") or ""
    kind, identity = public_identity(git)
    if kind == "ssh":
        allowed = any(_entry(line) == (email, identity) for line in _lines(trust.ssh))
    else:
        allowed = trust.allows_openpgp(email, [identity])
    if not allowed:
        who = "an admin" if role == view.ADMIN else "a release signer"
        raise Refused(
            f"{email or 'this signer'} may not change {path}: the signing key is not {who}'s",
            f"have {who} run this command",
        )


def add(
    git: g.Git,
    key_or_file: str,
    email: str,
    role: str = view.RELEASE,
    *,
    dry_run: bool = False,
    push: bool = False,
) -> TrustChange:
    key, email, role = parse_key(key_or_file), check_email(email), _role(role)
    path = ROLE_FILES[role]
    base, roles = _start(git, path)
    lines = _lines(view.read(git, base, path))
    if not roles.admins_file and role == view.ADMIN and not lines:
        # The first admins file: the release signers acted as admins until now,
        # so the signer who writes it keeps the role (docs/ARCHITECTURE.md, "Trust").
        kind, identity = public_identity(git)
        me = g.config_get(git, "user.email") or ""
        if kind == "ssh" and (me, identity) != (email, key):
            lines.append(f'{me} namespaces="git" {identity}')
    if (email, key) in {_entry(line) for line in lines}:
        return TrustChange("add", path, role, f"{email} is already in {path}", changed=False)
    lines.append(f'{email} namespaces="git" {key}')
    message = f"trust: add {email} as {'an admin' if role == view.ADMIN else 'a release signer'}"
    return _land(
        git, base, roles.admin, path, "\n".join(lines) + "\n", message, role, dry_run, push
    )


def remove(
    git: g.Git, email: str, role: str = view.RELEASE, *, dry_run: bool = False, push: bool = False
) -> TrustChange:
    email, role = check_email(email), _role(role)
    path = ROLE_FILES[role]
    base, roles = _start(git, path)
    lines = _lines(view.read(git, base, path))
    kept = [line for line in lines if _entry(line)[0] != email]
    if len(kept) == len(lines):
        return TrustChange("remove", path, role, f"{email} is not in {path}", changed=False)
    if role == view.ADMIN and not any(_entry(line)[0] for line in kept):
        raise Refused(
            f"removing {email} would leave {path} without an admin",
            "add another admin first",
        )
    message = f"trust: remove {email} from the {role} role"
    return _land(git, base, roles.admin, path, "\n".join(kept) + "\n", message, role, dry_run, push)


def adopt(git: g.Git, path: str, *, dry_run: bool = False, push: bool = False) -> TrustChange:
    """A commit, signed by the role owning `path`, that vouches for its current
    content: the anchor for a path with unsigned history."""
    path = path.strip().removeprefix("./")
    if not path or path.startswith(("/", "-")) or ".." in path.split("/") or "\n" in path:
        raise BadInput(f"{path!r} is not a path in the repository")
    base = head(git)
    if not view.present(git, base, path.rstrip("/")):
        raise BadInput(f"{path} does not exist at HEAD", "adopt a committed file or folder")
    role = view.owner(path)
    roles = view.roles(git, base)
    trust = roles.of(role)
    _require_signer(git, trust, path, role)
    message = f"trust: adopt {path}\n\n{view.ADOPT}: {path}\n"
    change = Change(base=base, message=message)
    if dry_run:
        return TrustChange("adopt", path, role, message.splitlines()[0], changed=True)
    return _finish(git, trust, change, "adopt", path, role, message, push)


def _start(git: g.Git, path: str) -> tuple[str, view.Roles]:
    if signing_format(git) != "ssh":
        raise BadInput("trust add/remove writes SSH keys; this repository signs with OpenPGP")
    base = head(git)
    require_clean(git, path)
    roles = view.roles(git, base)
    # Every role file is the admins' (docs/ARCHITECTURE.md, "Trust").
    _require_signer(git, roles.admin, path, view.ADMIN)
    return base, roles


def _land(
    git: g.Git,
    base: str,
    trust: TrustRoot,
    path: str,
    text: str,
    message: str,
    role: str,
    dry_run: bool,
    push: bool,
) -> TrustChange:
    change = Change(base=base, message=message + "\n", files={path: text}, sync_paths=(path,))
    if dry_run:
        return TrustChange(message.split(":")[1].split()[0], path, role, message, changed=True)
    action = message.split(":")[1].split()[0]
    return _finish(git, trust, change, action, path, role, message, push)


def _finish(
    git: g.Git,
    trust: TrustRoot,
    change: Change,
    action: str,
    path: str,
    role: str,
    message: str,
    push: bool,
) -> TrustChange:
    branch = require_branch(git)
    landed = land_local(git, trust, branch, change)
    assert landed.commit is not None
    pushed_to = None
    if push:
        remote, remote_branch = g.upstream(git, branch)
        result = g.push(git, remote, [f"{landed.commit}:refs/heads/{remote_branch}"])
        if result.returncode != 0:
            raise OperationFailed(
                f"committed {landed.commit[:12]} here, but {remote} refused the push "
                f"({(result.stderr or result.stdout).strip().splitlines()[-1:]})",
                f"run `git pull --rebase --gpg-sign`, then `git push {remote} {branch}`",
            )
        pushed_to = remote
    first_line = message.splitlines()[0]
    return TrustChange(action, path, role, first_line, True, landed.commit, pushed_to)
