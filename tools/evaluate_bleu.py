"""Score BLEU/chrF: `speechkit evaluate bleu` (same options; `python tools/evaluate_bleu.py --help`)."""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", "bleu", *sys.argv[1:]]))
