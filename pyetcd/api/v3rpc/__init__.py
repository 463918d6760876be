"""pyetcd.api.v3rpc."""
