"""pyetcd.server.auth."""
