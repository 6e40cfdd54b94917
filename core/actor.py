"""Who does what: the name recorded with every version and alias change.

The dashboard passes the name its user signed in with; everything else records
ALTRUISM_ACTOR when set (a service account, a CI job), else the OS user.
"""

from __future__ import annotations

import getpass
import os

ACTOR_ENV = "ALTRUISM_ACTOR"
MAX_ACTOR_CHARS = 200


def current_actor(login: str | None = None) -> str:
    """The actor to record: a dashboard `login` name, else ALTRUISM_ACTOR, else the OS
    user (`unknown` when none can be found). Whitespace is collapsed, length bounded."""
    for candidate in (login, os.environ.get(ACTOR_ENV)):
        name = " ".join(str(candidate or "").split())
        if name:
            return name[:MAX_ACTOR_CHARS]
    try:
        return getpass.getuser()[:MAX_ACTOR_CHARS] or "unknown"
    except (KeyError, OSError):  # no passwd entry for the uid (e.g. some containers)
        return f"uid {os.getuid()}"
