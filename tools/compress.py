"""Prune / quantize a Whisper checkpoint and report WER, size and CPU speed: `python tools/compress.py --help`."""

import sys

from speechkit.drivers.compress import main

if __name__ == "__main__":
    sys.exit(main())
