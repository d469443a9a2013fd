"""Storage back ends: the interface in `base`, one module per engine."""
