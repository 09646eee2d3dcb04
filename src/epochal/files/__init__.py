"""Low-level file helpers every writer shares: content checksums, temporary names and their orphans,
and an OS lock on a folder. A leaf: it imports nothing else of epochal."""
