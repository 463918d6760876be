"""pyetcd.grpcwire."""
