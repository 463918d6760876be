"""pyetcd.server.rafthttp."""
