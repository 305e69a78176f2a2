"""The Kubernetes deployer: the platform's components as StatefulSets in a
namespace of a cluster. The AWS (EKS) and GCP (GKE) providers make the cluster
and the bucket, then hand both to a :class:`KubeDeployer`.

Three parts, each with one job:

- :mod:`.client`: the few API calls (server-side apply, get, list, delete, a
  bounded ``/version``) on the connection the ``kubernetes`` client makes
  from a kubeconfig;
- :mod:`.manifests` (with :mod:`.pki`): the manifests, rendered without a
  cluster from each component's own cluster shape (``Component.cluster``:
  image, program, ports, probe, user, volume, secret mounts) and configuration
  files, so that neither it nor the deployer names a component;
- :mod:`.deployer`: deploy, upgrade, collect and delete, with their waits.

What it makes, in one namespace (``stackproof`` unless told): per component a
ConfigMap of its configuration files (if it has any), the Secrets it reads, a
Service and a StatefulSet, in the catalog's order (stores, gateway, agent).
The stores keep their data on a PersistentVolumeClaim; those that use object
storage (Cortex) also write to the cloud's bucket, with credentials from the
node role or workload identity (``aws_role_arn``: IRSA; ``gcp_service_account``:
workload identity, as a ServiceAccount annotation); VictoriaLogs keeps its
data on its volume only. The gateway's Service is a LoadBalancer; its address
goes into the certificate and the target's ``gateway_url``. Tokens are only in
Secrets: the tenants (``stackproof-tenants``), the gateway's token maps, which
nginx.conf includes, and the agent's token.
"""

from .client import FIELD_MANAGER, RESOURCES, ApiError, KubeApi
from .deployer import KubeDeployer
from .manifests import (CLUSTER_TLS, HASH_ANNOTATION, PART_OF, ROOT, TENANTS_SECRET, TLS_SECRET, TOOLS_IMAGE,
                        PlatformManifests, check_storage, cluster_components, image_for,
                        is_dns1123_label, is_label_key, is_label_value)
from .pki import GatewayPKI

__all__ = ["KubeDeployer", "KubeApi", "ApiError", "GatewayPKI", "PlatformManifests", "FIELD_MANAGER", "RESOURCES",
           "CLUSTER_TLS", "HASH_ANNOTATION", "PART_OF", "ROOT", "TENANTS_SECRET", "TLS_SECRET", "TOOLS_IMAGE",
           "check_storage", "cluster_components", "image_for",
           "is_dns1123_label", "is_label_key", "is_label_value"]
