"""Every module of ``rlm`` imports on its own, first, in a fresh interpreter (no import cycle
that only works when another module happened to be imported before)."""

from __future__ import annotations

import subprocess
import sys

from tests.shared_data import REPO_ROOT


def test_every_rlm_module_imports_first_in_a_fresh_interpreter() -> None:
    # One interpreter per module would take minutes; one child that imports each module in
    # a cleaned module table is as strict (each import starts with no rlm module loaded).
    # A child, too, because importing the runtime's modules declares Ray actors, which the
    # unit tests' process refuses.
    script = (
        "import importlib, pkgutil, sys\n"
        "import rlm\n"
        "names = sorted(m.name for m in pkgutil.walk_packages(rlm.__path__, 'rlm.'))\n"
        "names = [n for n in names if not n.endswith('__main__')]  # runs the CLI\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'rlm' or m.startswith('rlm.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as err:\n"
        "        failed.append(f'{name}: {err}')\n"
        "print(len(names))\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    count, *failed = done.stdout.strip().splitlines()
    assert int(count) > 100
    assert failed == []
