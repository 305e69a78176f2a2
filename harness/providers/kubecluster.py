"""The ``kube`` provider: the platform in an existing Kubernetes cluster that a
kubeconfig names (any cluster: a cloud's, an on-premises one, one on this
machine), through the same :class:`~harness.providers.kube.KubeDeployer` the
AWS and GCP providers use. stackproof makes nothing but its namespace there,
and takes nothing but that namespace away.

What fits the platform to the cluster: the kubeconfig and its context, the
namespace, the volumes' storage class, an image map (upstream image -> the
image to pull, for a private registry or images imported into the cluster),
the gateway's Service type (``LoadBalancer`` where the cluster has a
load-balancer controller, else ``NodePort``, reached at a node's address) and
the object storage (a cloud bucket, or by default the platform's own S3 server
in the cluster).

State: ``$STACKPROOF_STATE/kube-<platform>/`` holds ``state.json`` (the
kubeconfig's path, never its contents, the context and the options, so that a
later process, the CLI's ``status`` and ``down`` or the durability suite's
control of single components, finds the platform again) and ``target.yaml``
(the target file, owner-only: it holds the tokens).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import yaml

from .. import say
from ..errors import ConfigError, one_line
from ..releases import Release
from ..target import Target
from .base import Provider, SwapHook, read_state, write_state
from .common import state_root
from .kube.verbs import DeployerVerbs

# options kept in state.json; a later process takes them from there unless told otherwise
SETTINGS = ("kubeconfig", "context", "namespace", "storage_class", "images", "gateway_service", "node_address",
            "storage", "volume_size", "host_dir")
DEFAULTS = {"namespace": "stackproof", "gateway_service": "LoadBalancer", "volume_size": "10Gi"}


def default_kubeconfig() -> Path:
    """``$KUBECONFIG`` (its first existing file, when it lists several), else ``~/.kube/config``."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    for p in listed:
        if Path(p).expanduser().is_file():
            return Path(p).expanduser()
    return Path(listed[0]).expanduser() if listed else Path.home() / ".kube" / "config"


def _read_yaml(path: Path, what: str, missing_hint: str = "", not_yaml: str = "not YAML"):
    """A YAML (or JSON) file's data; one-line :class:`ConfigError` naming ``what`` and the file."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file{missing_hint}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: unreadable ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: {not_yaml} ({one_line(exc, 160)})") from None


def load_kubeconfig(path: str | Path) -> dict:
    """The kubeconfig at ``path`` as a dict, with the files it names relative to
    itself made absolute (as kubectl reads them); one-line errors naming the file."""
    path = Path(path).expanduser()
    data = _read_yaml(path, "kubeconfig", " (give one with --kubeconfig or KUBECONFIG)")
    if not isinstance(data, dict) or not data.get("clusters"):
        raise ConfigError(f"kubeconfig {path}: expected a mapping with 'clusters', 'users' and 'contexts'")
    for section, key, fields in (("clusters", "cluster", ("certificate-authority",)),
                                 ("users", "user", ("client-certificate", "client-key", "tokenFile"))):
        for entry in data.get(section) or []:
            body = (entry or {}).get(key) or {}
            for f in fields:
                if isinstance(body.get(f), str) and not Path(body[f]).expanduser().is_absolute():
                    body[f] = str(path.parent / body[f])
    return data


def load_image_map(path: str | Path) -> dict[str, str]:
    """An image map file, YAML or JSON: ``{upstream ref: ref to use}``, or the same under ``images:``."""
    path = Path(path).expanduser()
    data = _read_yaml(path, "image map", not_yaml="neither YAML nor JSON")
    if isinstance(data, dict) and set(data) == {"images"}:
        data = data["images"]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"image map {path}: expected a mapping of image references, e.g. "
                          "'busybox:1.37.0: registry.example/busybox:1.37.0'")
    return data


class KubeProvider(DeployerVerbs, Provider):
    """The platform in the cluster of ``kubeconfig`` (a path; default
    :func:`default_kubeconfig`) at ``context`` (default: its current one), in
    ``namespace``. ``images`` (a map) or ``image_map`` (a YAML/JSON file of one),
    ``storage_class``, ``gateway_service`` ("LoadBalancer" or "NodePort"),
    ``node_address`` (the address a NodePort gateway is reached at; default: a
    node's InternalIP), ``storage`` (a cloud bucket, see
    :func:`~harness.providers.kube.check_storage`; default: the platform's own S3
    server) and ``volume_size`` are the deployer's. Options not given come from
    the platform's state (a later process), then the defaults. ``target_file``:
    a target file this provider wrote (the durability suite's way back to it)."""

    name = "kube"

    def __init__(self, platform: str = "kube", *, kubeconfig: str | Path | None = None, context: str | None = None,
                 namespace: str | None = None, storage_class: str | None = None,
                 images: dict[str, str] | None = None, image_map: str | Path | None = None,
                 gateway_service: str | None = None, node_address: str | None = None, storage: dict | None = None,
                 volume_size: str | None = None, host_dir: str | None = None, target_file: str | Path | None = None,
                 state_dir: Path | None = None, timeout: float = 900, api_timeout: float = 10.0,
                 poll_interval: float = 2.0, progress: Callable[[str], None] = say):
        if not platform or not platform.replace("-", "").replace("_", "").isalnum() or len(platform) > 63:
            raise ConfigError(f"platform name {platform!r} must be letters, digits, '-' or '_' (at most 63)")
        self.platform = platform
        if state_dir is not None:
            self.state_dir = Path(state_dir)
        elif target_file is not None and (Path(target_file).parent / "state.json").is_file():
            self.state_dir = Path(target_file).parent
        else:
            self.state_dir = state_root() / f"kube-{platform}"
        self.state: dict = read_state(self.state_file, "kube: state file")
        if image_map is not None and images is not None:
            raise ConfigError("give the images as a map or as an image map file, not both")
        if image_map is not None:
            images = load_image_map(image_map)
        given = {"kubeconfig": str(Path(kubeconfig).expanduser().resolve()) if kubeconfig else None,
                 "context": context, "namespace": namespace, "storage_class": storage_class, "images": images,
                 "gateway_service": gateway_service, "node_address": node_address, "storage": storage,
                 "volume_size": volume_size, "host_dir": host_dir}
        self.explicit = {k for k, v in given.items() if v is not None}
        saved = self.state.get("settings") or {}
        self.settings = {k: given[k] if given[k] is not None else saved.get(k, DEFAULTS.get(k)) for k in SETTINGS}
        if not self.settings["kubeconfig"]:
            self.settings["kubeconfig"] = str(default_kubeconfig().resolve())
        self.timeout = timeout
        self.api_timeout = api_timeout
        self.poll_interval = poll_interval
        self.say = progress
        self._deployer = None
        from .kube import PlatformManifests  # needs the kubernetes package (the 'cloud' extra)

        # a bad option is an error now, before anything runs; the kubeconfig is read on first use
        PlatformManifests(**self._options())

    def _options(self) -> dict:
        st = self.settings
        return dict(namespace=st["namespace"], storage=st["storage"], labels={"stackproof/platform": self.platform},
                    platform=self.platform, volume_size=st["volume_size"], storage_class=st["storage_class"],
                    gateway_service=st["gateway_service"], node_address=st["node_address"], images=st["images"],
                    host_dir=st.get("host_dir"))

    # -- paths and state -------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def target_file(self) -> Path:
        return self.state_dir / "target.yaml"

    def _save_state(self, **extra) -> None:
        self.state.update(platform=self.platform, settings=dict(self.settings), **extra)
        write_state(self.state_file, self.state)

    @property
    def deployer(self):
        """The Kubernetes deployer for these settings, on the kubeconfig as its file says now."""
        if self._deployer is None:
            from .kube import KubeDeployer  # needs the kubernetes package (the 'cloud' extra)

            self._deployer = KubeDeployer(
                load_kubeconfig(self.settings["kubeconfig"]), api_timeout=self.api_timeout, provider=self.name,
                workdir=self.state_dir, context=self.settings["context"], poll_interval=self.poll_interval,
                progress=self.say, **self._options())
        return self._deployer

    def sibling(self, platform: str) -> "KubeProvider":
        """Another platform in the same cluster, with these settings, in a namespace of
        its own named ``platform`` (for a test that may break its platform); its
        ``destroy`` deletes only that namespace."""
        # not the host directory: a test's files there are its platform's, not the sibling's
        st = {k: v for k, v in self.settings.items() if v is not None and k not in ("namespace", "host_dir")}
        return KubeProvider(platform, **st, namespace=platform, state_dir=state_root() / f"kube-{platform}",
                            timeout=self.timeout, api_timeout=self.api_timeout, poll_interval=self.poll_interval,
                            progress=self.say)

    # -- the provider interface --------------------------------------------------
    def create(self) -> None:
        """Check that the cluster answers with these credentials; keep the settings."""
        version = self.deployer.check_api()
        self.say(f"kube: cluster at {self.deployer.server} ({version.get('gitVersion', '?')}), context "
                 f"{self.deployer.api.context}, namespace {self.settings['namespace']}")
        self._save_state()

    def deploy(self, release: Release) -> Target:
        self.create()
        target = self.deployer.deploy(release, timeout=self.timeout)
        self._save_state(release=release.name)
        return self._save_target(target, release)

    def upgrade(self, release: Release, on_swap: SwapHook | None = None) -> Target:
        target = self.deployer.upgrade(release, on_swap=on_swap, timeout=self.timeout)
        self._save_state(release=release.name)
        return self._save_target(target, release)

    def _save_target(self, target: Target, release: Release) -> Target:
        target.provider = self.name
        target.release = release.name
        target.save(self.target_file)  # owner-only: it holds the tenants' tokens
        return target

    def destroy(self) -> dict[str, str]:
        """Delete the namespace (and with it everything stackproof made there) and the
        platform's state. Idempotent; what was deleted, by name. Without a state (a
        create that reached no cluster, or a platform already down) nothing is asked of
        any cluster, unless a kubeconfig, context or namespace was given."""
        if not self.state and not self.explicit & {"kubeconfig", "context", "namespace"}:
            return {}
        self.deployer.delete(timeout=min(self.timeout, 600))
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state = {}
        return {f"namespace {self.settings['namespace']}": "deleted"}

    def status(self) -> dict:
        out = {"provider": self.name, "platform": self.platform, "state_file": str(self.state_file),
               "target_file": str(self.target_file), "kubeconfig": self.settings["kubeconfig"],
               "context": self.settings["context"], "namespace": self.settings["namespace"],
               "release": self.state.get("release")}
        if not self.state:
            return {**out, "state": "absent", "components": {}}
        return {**out, **self.deployer.status()}

    def collect_artifacts(self, dest: Path) -> list[Path]:
        """Every container's log, the ConfigMaps and the events (no token in any)."""
        return self.deployer.collect_artifacts(Path(dest))
