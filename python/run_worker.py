"""Bootstrap: `python -I run_worker.py` ignores the environment and the
script's directory, so the worker package is put on the path explicitly."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from manimd_worker.main import main  # noqa: E402

main()
