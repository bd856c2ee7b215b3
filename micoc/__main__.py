import sys

from micoc.cli import main

sys.exit(main())
