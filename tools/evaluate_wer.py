"""Score WER/CER: `speechkit evaluate wer` (same options; `python tools/evaluate_wer.py --help`)."""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", "wer", *sys.argv[1:]]))
