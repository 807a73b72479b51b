import sys

from deeperfour.cli import main

sys.exit(main())
