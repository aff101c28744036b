"""Score recall: `python tools/evaluate_recall.py --help` (same as `speechkit evaluate recall`)."""

import sys

from speechkit.metrics.cli import main

if __name__ == "__main__":
    sys.exit(main(["recall", *sys.argv[1:]]))
