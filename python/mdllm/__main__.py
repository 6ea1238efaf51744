import sys

from mdllm.cli import main

sys.exit(main())
