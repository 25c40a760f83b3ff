"""Domain logic between the HTTP handlers and the nerdctl adapter."""
