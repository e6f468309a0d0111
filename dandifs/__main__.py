import sys

from dandifs.cli import main

sys.exit(main())
