"""Phase 3 steering: vectors, the plan of units, the sweep, and its statistics."""
