import sys

from sphana_bridge.cli import main

sys.exit(main())
