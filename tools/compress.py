"""Prune / quantize a Whisper checkpoint and report WER, size and CPU speed.

Same as `speechkit compress` (same options; `python tools/compress.py --help`).
"""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["compress", *sys.argv[1:]]))
