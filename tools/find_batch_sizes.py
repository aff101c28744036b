"""Search the largest batch size per bucket.

Same as `speechkit batch-sizes` (same options; `python tools/find_batch_sizes.py --help`).
"""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["batch-sizes", *sys.argv[1:]]))
