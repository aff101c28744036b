"""Fit the LR-annealing scaling law on Lightning CSV logs and predict other runs.

Same as `speechkit fit-scaling-law` (same options; `python tools/fit_scaling_law.py --help`).
"""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["fit-scaling-law", *sys.argv[1:]]))
