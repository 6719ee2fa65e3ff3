"""Who may do what, decided on the server at the moment of acting.

Two modes:

- **Open** (no sign-in configured): a local demo. Anyone who reaches the page may launch and manage;
  the name a person types is only a label for the runs they launch, never an identity.
- **Sign-in** (``[auth]`` in ``.streamlit/secrets.toml``): the identity is the provider's *verified*
  email, or its stable ``sub`` when there is no verified email (:func:`identity_from_user_info`);
  nothing typed is ever an identity. ``[lab] admins`` may do everything; ``[lab] launchers`` (when
  given) lists who may launch, otherwise anyone signed in may; a run's owner or an admin may cancel or
  delete it, and resuming also needs launch permission.

``LAB_READ_ONLY=1`` turns every browser visitor into a spectator (Learn, look at every run, try the
models) — except admins who signed in, when sign-in is configured. The command line is run by people
with a shell on the box: it is trusted like open mode and read-only mode does not apply to it, but
quotas do (:mod:`lib.registry.quotas`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lib.errors import RunError
from lib.store import rundir

SOURCES = ("sign-in", "open", "cli")


class PermissionDenied(RunError):
    """The person may not do this; the message says why and who may."""


def _norm(name: Any) -> str:
    return str(name or "").strip().casefold()


def env_flag(name: str, env: Mapping[str, str] | None = None) -> bool:
    value = (env if env is not None else os.environ).get(name, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Actor:
    """Who is acting: ``identity`` is the verified sign-in identity, the typed name in open mode (a label,
    not a proof), or the operating-system user for the command line."""

    identity: str = ""
    source: str = "open"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown actor source {self.source!r}")

    @property
    def signed_in(self) -> bool:
        return self.source == "sign-in" and bool(self.identity)

    @property
    def key(self) -> str:
        return _norm(self.identity)


@dataclass(frozen=True)
class Policy:
    """The server's access settings (built by the app from secrets and the environment)."""

    sign_in: bool = False
    admins: frozenset[str] = field(default_factory=frozenset)
    launchers: frozenset[str] | None = None
    read_only: bool = False
    rendezvous_endpoints: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, lab: Mapping[str, Any] | None, *, sign_in: bool,
                      env: Mapping[str, str] | None = None) -> Policy:
        """From the ``[lab]`` section of the secrets (admins, launchers, rendezvous_endpoints) and
        ``LAB_READ_ONLY``."""
        lab = lab or {}
        launchers = lab.get("launchers")
        endpoints = tuple(str(e).strip() for e in (lab.get("rendezvous_endpoints") or []) if str(e).strip())
        return cls(sign_in=sign_in, admins=frozenset(_norm(a) for a in lab.get("admins", []) or [] if _norm(a)),
                   launchers=None if launchers is None else frozenset(_norm(x) for x in launchers if _norm(x)),
                   read_only=env_flag("LAB_READ_ONLY", env), rendezvous_endpoints=endpoints)

    def is_admin(self, actor: Actor) -> bool:
        return actor.signed_in and actor.key in self.admins


CLI_POLICY = Policy()


def cli_actor() -> Actor:
    """The operating-system user running the command line."""
    import getpass
    try:
        return Actor(getpass.getuser(), "cli")
    except Exception:  # noqa: BLE001 - no name for this uid (containers)
        return Actor(str(os.getuid()), "cli")


def identity_from_user_info(info: Mapping[str, Any] | None) -> str | None:
    """The identity of a signed-in person: the email when the provider says it is verified, else the
    provider's stable subject id (``sub``); None when it gives neither. A display name never counts."""
    if not info:
        return None
    email = str(info.get("email") or "").strip()
    if email and info.get("email_verified") is True:
        return email
    sub = str(info.get("sub") or "").strip()
    return sub or None


def _run_owner(run_dir: str | os.PathLike) -> str:
    return _norm(rundir.read_config(run_dir).get("owner") or rundir.read_status(run_dir).get("owner"))


def why_not_launch(actor: Actor, policy: Policy) -> str | None:
    """None when ``actor`` may launch runs, else the reason (shown as is)."""
    if actor.source == "cli":
        return None
    if policy.read_only and not policy.is_admin(actor):
        return "This lab is in read-only mode (LAB_READ_ONLY): runs can be looked at and tried, not launched."
    if not policy.sign_in:
        return None
    if not actor.signed_in:
        return "Sign in to launch runs."
    if policy.is_admin(actor) or policy.launchers is None or actor.key in policy.launchers:
        return None
    return f"{actor.identity} may not launch runs here; ask an admin to add you to [lab] launchers."


def why_not_manage(run_dir: str | os.PathLike, actor: Actor, policy: Policy) -> str | None:
    """None when ``actor`` may cancel or delete this run, else the reason."""
    if actor.source == "cli":
        return None
    if policy.read_only and not policy.is_admin(actor):
        return "This lab is in read-only mode (LAB_READ_ONLY): runs cannot be cancelled, resumed or deleted here."
    if not policy.sign_in:
        return None
    if not actor.signed_in:
        return "Sign in to manage runs."
    if policy.is_admin(actor):
        return None
    owner = _run_owner(run_dir)
    if owner and owner == actor.key:
        return None
    return f"Only the run's owner ({owner or 'unknown'}) or an admin can do this."


def why_not_resume(run_dir: str | os.PathLike, actor: Actor, policy: Policy) -> str | None:
    return why_not_manage(run_dir, actor, policy) or why_not_launch(actor, policy)


def can_launch(actor: Actor, policy: Policy) -> bool:
    return why_not_launch(actor, policy) is None


def can_manage(run_dir: str | os.PathLike, actor: Actor, policy: Policy) -> bool:
    return why_not_manage(run_dir, actor, policy) is None


def can_resume(run_dir: str | os.PathLike, actor: Actor, policy: Policy) -> bool:
    return why_not_resume(run_dir, actor, policy) is None


def require(reason: str | None) -> None:
    if reason:
        raise PermissionDenied(reason)


def owner_for_launch(actor: Actor, policy: Policy, typed: str = "") -> str:
    """Who a new run belongs to: the signed-in identity under sign-in (never a typed name); otherwise the
    typed name, or the command line's user."""
    if policy.sign_in and actor.source != "cli":
        return actor.identity
    return (typed or "").strip()[:80] or (actor.identity if actor.source == "cli" else "")


def endpoint_allowed(endpoint: str, policy: Policy) -> bool:
    return endpoint.strip() in policy.rendezvous_endpoints


def normalise_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(_norm(n) for n in names if _norm(n))
