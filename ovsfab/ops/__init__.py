"""User-level operations: each a plan of steps with undo, rolled back on failure."""
