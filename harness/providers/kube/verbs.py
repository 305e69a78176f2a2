"""The verbs of a provider whose platform a :class:`~harness.providers.kube.KubeDeployer`
made (kube, local-kube, aws, gcp, and a sibling platform beside any of them): stopping,
killing and starting one component on its data, removing its volume, the tenants' log
rule files, and the in-cluster webhook receiver are the deployer's own. One mixin, so the
four providers do not each repeat seven one-line delegations."""

from __future__ import annotations


class DeployerVerbs:
    """Mixed in before :class:`~harness.providers.base.Provider`. A provider gives its deployer
    through ``deployer``, or overrides :meth:`_deployer_for` when making one needs to say what
    for (a cloud's fresh token: the error names the verb)."""

    def _deployer_for(self, what: str):
        return self.deployer

    # -- single components, on the same data (capability 'restart') ---------------
    def stop_component(self, role: str) -> str:
        return self._deployer_for(f"stop the {role}").stop_component(role)

    def kill_component(self, role: str) -> None:
        self._deployer_for(f"kill the {role}").kill_component(role)

    def start_component(self, role: str) -> float:
        return self._deployer_for(f"start the {role}").start_component(role)

    def remove_local_data(self, role: str) -> list[str]:
        return self._deployer_for(f"remove the {role}'s volume").remove_local_data(role)

    # -- log rule files (capability 'log-alerting'): the deployer keeps them in the cluster ------
    def set_log_rules(self, tenant: str, namespace: str, text: str) -> None:
        self._deployer_for(f"set log rules of {tenant}").set_log_rules(tenant, namespace, text)

    def log_rules(self, tenant: str) -> dict[str, str]:
        return self._deployer_for(f"read log rules of {tenant}").log_rules(tenant)

    def delete_log_rules(self, tenant: str, namespace: str) -> None:
        self._deployer_for(f"delete log rules of {tenant}").delete_log_rules(tenant, namespace)

    def webhook_receiver(self):
        """The run's webhook receiver (capability 'alerting-webhook'): in the platform's namespace,
        read through the API (:class:`~harness.providers.kube.webhook.ClusterReceiver`), with the
        deployer made anew for each read (a cloud's token expires)."""
        from .webhook import ClusterReceiver

        return ClusterReceiver(lambda: self._deployer_for("the webhook receiver"))
