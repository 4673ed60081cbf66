"""`python -m minidalle`: runs the command line (`minidalle.cli`)."""
import sys

from minidalle.cli import main

sys.exit(main())
