"""Score retrieval recall: `speechkit evaluate recall` (same options; `python tools/evaluate_recall.py --help`)."""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", "recall", *sys.argv[1:]]))
