"""HTTP handlers for the Docker Engine API, one module per resource."""
