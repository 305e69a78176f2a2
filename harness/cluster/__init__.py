"""A real single-node Kubernetes cluster on this machine."""
