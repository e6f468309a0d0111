"""upload layer."""
