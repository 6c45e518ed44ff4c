"""``pipeline demo``: the bundled site (package data) served on loopback."""
