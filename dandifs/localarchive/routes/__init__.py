"""HTTP endpoints of the local archive, one module per area of the API."""
