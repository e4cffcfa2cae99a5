import sys

from pipeline.find.cli import main

sys.exit(main())
