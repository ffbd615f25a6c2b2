import sys

from rerankit.cli import main

sys.exit(main())
