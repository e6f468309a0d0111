"""namespace layer."""
