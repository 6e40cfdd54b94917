"""`python -m ui.dashboard [streamlit run options]`: the dashboard server with its guards.

The same as `streamlit run app.py [options]`, except that `ui.guards` are installed before
the server accepts its first visitor (a plain `streamlit run app.py` installs them on the
first page run, so a burst of visitors at start-up, or uploads from a client that never runs
a page, would come before them).
"""

from __future__ import annotations

import sys

from ui import guards


def main(argv: list[str] | None = None) -> int:
    from streamlit.web import cli

    guards.install()
    guards.warm_imports()
    sys.argv = ["streamlit", "run", "app.py", *(sys.argv[1:] if argv is None else argv)]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
