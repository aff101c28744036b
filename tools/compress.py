"""Prune / quantize a Whisper checkpoint and report WER, size and CPU speed: `python tools/compress.py --help`."""

import sys

from speechkit.compress.apply import main

if __name__ == "__main__":
    sys.exit(main())
