"""Hessian top eigenvalue and trace of a trained Lightning checkpoint.

Same as `speechkit sharpness` (same options; `python tools/sharpness.py --help`).
"""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["sharpness", *sys.argv[1:]]))
