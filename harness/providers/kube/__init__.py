"""The Kubernetes deployer: the platform's components as StatefulSets in a
namespace of a cluster. The AWS (EKS) and GCP (GKE) providers make the cluster
and the bucket, then hand both to a :class:`KubeDeployer`; the ``kube``
provider (:mod:`harness.providers.kubecluster`) hands it any cluster a
kubeconfig names.

Three parts, each with one job:

- :mod:`.client`: the few API calls (server-side apply, get, list, delete,
  scale, a bounded ``/version``) on the connection the ``kubernetes`` client
  makes from a kubeconfig and one of its contexts;
- :mod:`.manifests` (with :mod:`.pki`): the manifests, rendered without a
  cluster from each component's own cluster shape (``Component.cluster``:
  image, program, ports, probe, user, volume, secret mounts) and configuration
  files, so that neither it nor the deployer names a component;
- :mod:`.deployer`: deploy, upgrade, collect and delete, with their waits; and
  stop, kill, start and a fresh volume for a single component (capability
  'restart'); the files a component's shape says the provider keeps (the log
  rule evaluator's rule files, capability 'log-alerting');
- :mod:`.webhook`: the run's Alertmanager webhook receiver in the namespace,
  read back through the pod's log (capability 'alerting-webhook');
- :mod:`.sibling`: a platform of a test's own beside a cloud provider's, in a
  namespace of its own on the same cluster (``own_platform``).

What it makes, in one namespace (``stackproof`` unless told): per component a
ConfigMap of its configuration files (if it has any), the Secrets it reads, a
Service and a StatefulSet, in the catalog's order (object store, stores, the
log rule evaluator once per tenant, gateway, agent). The stores keep their data on a PersistentVolumeClaim (of the
``storage_class`` given, else the cluster's default); those that use object
storage (Cortex) also write to a bucket: the cloud's, with credentials from
the node role or workload identity (``aws_role_arn``: IRSA;
``gcp_service_account``: workload identity, as a ServiceAccount annotation),
or, when no bucket is given, the platform's own S3 server (versitygw) as a pod
with a volume, a bucket per store that uses one, and generated credentials kept
in a Secret only (the pods read them through their environment). VictoriaLogs
keeps its data on its volume only. The gateway's Service is a LoadBalancer
(clouds) or a NodePort (``gateway_service``, for clusters without a
load-balancer controller: reached at a node's address, never through a
port-forward); that address goes into the certificate and the target's
``gateway_url``. An image map (``images``) points every container at a
registry of the user's. Tokens are only in Secrets: the tenants
(``stackproof-tenants``), the gateway's token maps, which nginx.conf includes,
and the agent's token.
"""

from .client import FIELD_MANAGER, RESOURCES, ApiError, KubeApi
from .deployer import CAPABILITIES, KubeDeployer
from .manifests import (CLUSTER_TLS, GATEWAY_SERVICES, HASH_ANNOTATION, OBJECT_STORAGE_SECRET, PART_OF, ROOT,
                        S3_CLIENT_ENV, TENANTS_SECRET, TLS_SECRET, TOOLS_IMAGE, PlatformManifests, check_images,
                        check_storage, cluster_components, image_for, is_dns1123_label, is_label_key,
                        is_label_value, platform_images)
from .pki import GatewayPKI

__all__ = ["KubeDeployer", "KubeApi", "ApiError", "GatewayPKI", "PlatformManifests", "FIELD_MANAGER", "RESOURCES",
           "CAPABILITIES", "CLUSTER_TLS", "GATEWAY_SERVICES", "HASH_ANNOTATION", "OBJECT_STORAGE_SECRET", "PART_OF",
           "ROOT", "S3_CLIENT_ENV", "TENANTS_SECRET", "TLS_SECRET", "TOOLS_IMAGE", "check_images", "check_storage",
           "cluster_components", "image_for", "platform_images", "is_dns1123_label", "is_label_key",
           "is_label_value"]
