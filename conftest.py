"""Settings for every test, doctest and docs example: the calibration cache stays off unless a
test turns it on (tests change calibration internals that its key rightly ignores)."""

import os

os.environ["SIMREC_NO_CACHE"] = "1"
