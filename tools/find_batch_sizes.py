"""Search the largest batch size per bucket; same as `speechkit batch-sizes` (see --help)."""
import sys

from speechkit.data.sampling_cli import batch_sizes_main

sys.exit(batch_sizes_main())
