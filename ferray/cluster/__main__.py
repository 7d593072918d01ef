"""``python -m ferray.cluster search|resume ...``: the entrypoint of a sweep submitted as a Ray job."""

import sys

from ferray.cluster._entrypoint import main

sys.exit(main())
