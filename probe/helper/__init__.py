"""The control helper: one versioned protocol, its client and its server."""
