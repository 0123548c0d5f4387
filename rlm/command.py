"""The ``rlm`` console script: :func:`rlm.cli.main`, or an install hint without the service.

``pip install rlm-hypervisor`` installs the SDK only, yet the script comes with the
distribution; run there, it says which extra brings the service instead of a traceback about
``orjson`` or ``ray``.
"""

from __future__ import annotations

import sys

__all__ = ["SERVER_HINT", "main"]

#: What to install for the ``rlm`` command (the service, its CLI and the engine).
SERVER_HINT = "pip install 'rlm-hypervisor[server]'"


def main() -> int:
    """Run the CLI, or print how to install it and return 1."""
    try:
        from rlm.cli import main as cli_main
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] in ("rlm", "rlm_hypervisor", "serve_app"):
            raise  # a module of ours is missing: a broken install, not a missing extra
        print(
            f"rlm: the service's command needs the 'server' extra ({err.name} is not installed): "
            f"{SERVER_HINT}",
            file=sys.stderr,
        )
        return 1
    return cli_main()
