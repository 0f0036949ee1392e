import sys

from recmodels.cli.parser import main

sys.exit(main())
