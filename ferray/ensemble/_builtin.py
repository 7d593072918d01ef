"""The built-in ensemble methods, registered in this order (the order ``--method all`` fits them)."""

from ferray.ensemble import _greedy, _stacking, _mean, _vote  # noqa: F401, I001  (importing registers them)
