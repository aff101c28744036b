"""Estimate 1-D / 2-D bucket bins from a cut manifest; same as `speechkit bins` (see --help)."""
import sys

from speechkit.data.sampling_cli import bins_main

sys.exit(bins_main())
