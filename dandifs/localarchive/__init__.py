"""localarchive layer."""
