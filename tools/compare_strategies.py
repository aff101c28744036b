"""Compare full / LoRA / frozen-encoder / multistage fine-tuning.

Same as `speechkit compare-strategies` (same options; `python tools/compare_strategies.py --help`).
"""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare-strategies", *sys.argv[1:]]))
