"""The account line commands: ``%clarifai login`` (and keeping a login), ``logout``, ``offline``.

Where answers come from is decided here: a PAT typed for this session, a PAT kept in the
Clarifai CLI config for the next kernels (``login --save``, ``logout --forget``; the file
handling is :mod:`clarifai_magic.config`'s), or the built-in offline server. A run where nobody
can type (nbconvert, papermill) gets one paragraph saying how to give the PAT instead.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping

from IPython.core.error import StdinNotImplementedError, UsageError

from .config import (
    CONFIG_FILE,
    DEFAULT_API_BASE,
    ConfigError,
    Secret,
    find_credentials,
    forget_pat,
    save_pat,
)
from .output import Output
from .session import Session, SessionError


class AccountCommands:
    """Login, logout and offline mode, over one session."""

    def __init__(self, session: Session, *, output: Output) -> None:
        self.session = session
        self.out = output

    def login(self, rest: str) -> None:
        """[--save]: paste a Clarifai PAT for this session (not echoed); --save keeps it."""
        try:
            pat = getpass.getpass("Clarifai PAT: ").strip()
        except (StdinNotImplementedError, EOFError):  # nbconvert, papermill: nobody can type
            self._no_way_to_type()
            return
        if not pat:
            self.out.warn("No PAT entered; nothing changed.")
            return
        secret = self.session.login_pat = Secret(pat)
        if rest.strip() != "--save":
            self.out.text(
                "Logged in for this session: this PAT is used until `%clarifai logout` or a "
                "restart, instead of CLARIFAI_PAT or the Clarifai CLI config. It is not saved "
                "(`%clarifai login --save` keeps it for the next kernels)."
            )
            return
        # The host the PAT is meant for goes with it, so it is never sent to another one.
        found = find_credentials(self.session.environ, login_pat=secret)
        try:
            saved = save_pat(secret, found.api_base if found else DEFAULT_API_BASE)
        except ConfigError as exc:
            raise SessionError(
                f"Logged in for this session, but the PAT was not saved: {exc}"
            ) from None
        note = ""
        if not saved.current:
            note += (
                " Clarifai's CLI keeps using its current context; `clarifai config "
                f"use-context {saved.context}` would make it use this one too."
            )
        if self._environ().get("CLARIFAI_PAT"):
            note += " CLARIFAI_PAT is also set in the environment, and comes first in new kernels."
        self.out.text(
            f"Logged in, and saved the PAT in {saved.path} (context {saved.context!r}, readable "
            "only by you), where new kernels and Clarifai's own tools find it. "
            f"`%clarifai logout --forget` removes it.{note}"
        )

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.session.environ is None else self.session.environ

    def _no_way_to_type(self) -> None:
        """`%clarifai login` where input can't be typed: fine if a PAT is found anyway."""
        found = find_credentials(self.session.environ, login_pat=self.session.login_pat)
        if found is not None:
            self.out.text(
                f"`%clarifai login` can't ask for a PAT here (this run takes no typed input); "
                f"using the PAT from {found.source}."
            )
            return
        raise SessionError(
            "`%clarifai login` can't ask for a PAT here: this run takes no typed input (as under "
            "nbconvert or papermill). Set CLARIFAI_PAT in the environment that starts the "
            "kernel, save the PAT once with `%clarifai login --save` in an interactive notebook "
            "or with Clarifai's CLI (`clarifai login`), or use `%clarifai offline on` for "
            "scripted answers without an account."
        )

    def logout(self, rest: str) -> None:
        """[--forget]: forget a PAT given with %clarifai login (--forget: and the saved one)."""
        self.session.login_pat = None
        if rest.strip() != "--forget":
            self.out.text("Forgot the PAT from %clarifai login.")
            return
        try:
            removed = forget_pat()
        except ConfigError as exc:
            raise SessionError(
                f"Forgot the PAT for this session, but not the saved one: {exc}"
            ) from None
        where = CONFIG_FILE.expanduser()
        self.out.text(
            f"Forgot the PAT from %clarifai login, and removed the saved one from {where}; "
            "the CLI's other contexts are untouched."
            if removed
            else f"Forgot the PAT from %clarifai login; none was saved in {where}."
        )

    def offline(self, rest: str) -> None:
        """[on|off|auto]: answer from the built-in offline server; no argument: show which."""
        choice = rest.strip()
        if choice not in ("", "on", "off", "auto"):
            raise UsageError("Usage: %clarifai offline [on|off|auto]")
        if not choice:
            self.out.text(self._offline_state())
            return
        if choice == "off":
            self.session.go_online()
            self.out.text("Offline mode off: questions go to Clarifai again.")
            return
        if choice == "auto" and not self.session.offline:
            try:
                creds = self.session.credentials()
            except SessionError:
                pass
            else:
                self.out.text(f"Using Clarifai with the PAT from {creds.source}.")
                return
        address = self.session.go_offline()
        self.out.text(
            f"Offline mode on: answers now come from the built-in server at {address}. They are "
            "SCRIPTED (the server echoes your question), not from a real model. "
            "`%clarifai offline off` switches back."
        )

    def _offline_state(self) -> str:
        if self.session.offline:
            creds = self.session.credentials()
            return (
                f"Offline mode is on: answers come from the built-in server at {creds.api_base}, "
                "SCRIPTED, not from a real model. `%clarifai offline off` switches back."
            )
        try:
            creds = self.session.credentials()
        except SessionError:
            return (
                "Offline mode is off, and no PAT is set, so questions can't be sent yet: set "
                "CLARIFAI_PAT, run `%clarifai login`, or `%clarifai offline on` for scripted "
                "answers without an account."
            )
        return (
            f"Offline mode is off: questions go to {creds.base_url} with the PAT from "
            f"{creds.source}. `%clarifai offline on` answers from the built-in server instead."
        )
