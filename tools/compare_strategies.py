"""Compare full / LoRA / frozen-encoder / multistage fine-tuning: `python tools/compare_strategies.py --help`."""

import sys

from speechkit.drivers.compare import main

if __name__ == "__main__":
    sys.exit(main())
