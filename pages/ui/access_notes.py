"""What a visitor is told about who may do what here: read-only mode, sign-in, open mode."""
from __future__ import annotations

import streamlit as st

from lib.registry import access
from lib.registry.access import Actor, Policy
from pages.ui.text import plain

READ_ONLY_TEXT = ("This lab is read-only (a public demo): you can use Learn, look at every run, chart and "
                  "compare them and try the models, but nothing can be launched, cancelled, resumed or deleted "
                  "from the browser.")
OPEN_TEXT = ("This lab is running open: no sign-in is configured, so anyone who can open it may launch, cancel and "
             "delete runs, and the name you type is only a label on your runs. That is fine for a demo on your own "
             "machine; see the README to set up sign-in on a shared server.")


def read_only_banner(actor: Actor, policy: Policy) -> None:
    """A banner in read-only mode (``LAB_READ_ONLY=1``); nothing otherwise."""
    if not policy.read_only:
        return
    extra = " You signed in as an admin: you may still manage runs." if policy.is_admin(actor) else ""
    st.warning(READ_ONLY_TEXT + extra, icon=":material/visibility:")


def launch_notice(actor: Actor, policy: Policy) -> None:
    """Above the Train form: the read-only banner, or what signing in would allow, or the open-mode note."""
    read_only_banner(actor, policy)
    if policy.read_only and not policy.is_admin(actor):
        return
    if policy.sign_in:
        if not actor.signed_in:
            st.info("Sign in to launch runs or manage your own; until then this page is read-only.")
            if st.button("Sign in", key="tr_login"):
                st.login()
        elif not access.can_launch(actor, policy):
            st.info(f"You are signed in as {plain(actor.identity)}, but you are not on this lab's list of people who "
                    "may launch runs. You can still watch every run.")
    else:
        st.caption(OPEN_TEXT)
