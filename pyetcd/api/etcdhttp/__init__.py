"""pyetcd.api.etcdhttp."""
