"""Score bleu: `python tools/evaluate_bleu.py --help` (same as `speechkit evaluate bleu`)."""

import sys

from speechkit.metrics.cli import main

if __name__ == "__main__":
    sys.exit(main(["bleu", *sys.argv[1:]]))
