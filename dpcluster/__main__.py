import sys

from dpcluster.cli.main import main

sys.exit(main())
