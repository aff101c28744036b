"""Score wer: `python tools/evaluate_wer.py --help` (same as `speechkit evaluate wer`)."""

import sys

from speechkit.metrics.cli import main

if __name__ == "__main__":
    sys.exit(main(["wer", *sys.argv[1:]]))
