"""A real single-node Kubernetes cluster on this machine.

- :mod:`.kubernetes`: its programs and their pinned versions, built from their
  Go modules into the binary cache;
- :mod:`.node`: the node's own network and mount namespaces, its veth, bridge
  and nftables guard, and the host snapshot a teardown is judged by;
- :mod:`.containerd`: a containerd of the harness's own, for the node (and for
  the image tests on the host);
- :mod:`.cluster`: :class:`~.cluster.LocalCluster`, which starts and stops it all.

Why namespaces rather than the host's own network and mounts: a kubelet and a
kube-proxy change the host in many small ways (routes, rules, sysctls, mounts
under hard-coded paths). Inside a network and a mount namespace of the node's
own, nearly all of that vanishes with the namespace, so a run leaves the host
as it found it by construction, and what is left to restore by hand (a few
kernel sysctls, the pods' cgroups) is short and checked by a test.

The platform's images come from :mod:`harness.images`; the provider that
deploys into the cluster is :mod:`harness.providers.localkube`.
"""
