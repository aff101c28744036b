"""Estimate 1-D / 2-D bucket bins from a cut manifest.

Same as `speechkit bins` (same options; `python tools/estimate_bucket_bins.py --help`).
"""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["bins", *sys.argv[1:]]))
