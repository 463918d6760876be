"""pyetcd.server.etcdserver."""
