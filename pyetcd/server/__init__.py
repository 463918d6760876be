"""pyetcd.server."""
