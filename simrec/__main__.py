import sys

from simrec.cli import main

sys.exit(main())
