"""The faas-provider JSON types (faas-provider types/*.go) as typed dataclasses, parsed and validated at the HTTP edge.

Field names on the wire are exact; zero values are omitted on output the way Go's ``omitempty`` does, except
``createdAt``, which is always present. Every parse error is an :class:`InvalidRequestError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provider.errors import InvalidRequestError
from provider.quantity import memory_bytes, nano_cpus
from servicekit import scaling
from servicekit.defaults import DEFAULT_NAMESPACE as DEFAULT_NAMESPACE  # re-exported for the handlers

RESERVED_LABEL_PREFIX = "com.pyfaasd."
# Labels under the reserved prefix that a function sets itself (the rest are the provider's container labels).
USER_LABELS = frozenset({"com.pyfaasd.pull-policy"})
SCALE_MIN_LABEL = scaling.MIN
FUNCTION_LABEL = "faas_function"  # added to the labels a function reports (not stored in its spec)

# DNS-1123 label: what Kubernetes and faas-cli allow for function and namespace names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[^=\x00]+$")
_RESOURCE_FIELDS = ("memory", "cpu", "nvidia.com/gpu", "amd.com/gpu", "intel.com/gpu")


def check_dns_label(field_name: str, value: str) -> str:
    if not value:
        raise InvalidRequestError(f"{field_name} is required")
    if len(value) > 63:
        raise InvalidRequestError(f"{field_name} {value!r} is longer than 63 characters")
    if not _DNS_LABEL.match(value):
        raise InvalidRequestError(
            f"{field_name} {value!r} is not a valid name (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return value


_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def check_label_key(key: str) -> str:
    """A label key as Kubernetes and Docker tooling accept it: ``[prefix/]name``, the prefix a DNS subdomain,
    the name at most 63 letters, digits, ``-``, ``_`` and ``.``, starting and ending with a letter or digit."""
    prefix, slash, name = key.rpartition("/")
    valid_prefix = not slash or (len(prefix) <= 253 and bool(_DNS_SUBDOMAIN.match(prefix)))
    if not valid_prefix or not _LABEL_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"labels: {key!r} is not a valid label key ([prefix/]name: letters, digits, '-', '_' and '.', "
            "63 at most, starting and ending with a letter or digit)"
        )
    return key


def check_secret_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise InvalidRequestError("secret name is required")
    if "/" in name or ".." in name:
        raise InvalidRequestError(f"secret name {name!r} may not contain '/' or '..'")
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise InvalidRequestError(
            f"secret name {name!r} is not a valid name (lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit)"
        )
    return name


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        raise InvalidRequestError(f"a JSON {what} is required in the request body")
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"the request body must be a JSON object ({what})")
    return value


def _str(obj: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidRequestError(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{key} must be a string")
    if required and not value.strip():
        raise InvalidRequestError(f"{key} is required")
    return value


def _str_map(obj: Mapping[str, Any], key: str) -> dict[str, str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidRequestError(f"{key} must be an object of strings")
    return dict(value)


def _str_list(obj: Mapping[str, Any], key: str) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequestError(f"{key} must be a list of strings")
    return list(value)


def _bool(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{key} must be true or false")
    return value


def namespace_of(obj: Mapping[str, Any], key: str = "namespace") -> str:
    return _str(obj, key).strip() or DEFAULT_NAMESPACE


@dataclass(frozen=True, slots=True)
class Resources:
    """FunctionResources: quantity strings as sent (``memory``, ``cpu``, GPU counts)."""

    values: Mapping[str, str]

    @classmethod
    def parse(cls, obj: Mapping[str, Any], key: str) -> Resources | None:
        raw = obj.get(key)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise InvalidRequestError(f"{key} must be an object")
        values: dict[str, str] = {}
        for name, value in raw.items():
            if name not in _RESOURCE_FIELDS:
                raise InvalidRequestError(f"{key}.{name} is not a known resource ({', '.join(_RESOURCE_FIELDS)})")
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise InvalidRequestError(f'{key}.{name} must be a string such as "128Mi"')
            values[name] = value
        resources = cls(values)
        resources.memory_bytes(key)
        resources.nano_cpus(key)
        return resources if values else None

    def memory_bytes(self, key: str = "limits") -> int | None:
        value = self.values.get("memory")
        return None if value is None else memory_bytes(f"{key}.memory", value)

    def nano_cpus(self, key: str = "limits") -> int | None:
        value = self.values.get("cpu")
        return None if value is None else nano_cpus(f"{key}.cpu", value)

    def to_json(self) -> dict[str, str]:
        return dict(self.values)


@dataclass(frozen=True, slots=True)
class FunctionDeployment:
    """The body of POST/PUT /system/functions, validated; also what a container's spec label holds."""

    service: str
    image: str
    namespace: str = DEFAULT_NAMESPACE
    env_process: str = ""
    env_vars: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    limits: Resources | None = None
    requests: Resources | None = None
    read_only_root_filesystem: bool = False

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> FunctionDeployment:
        service = check_dns_label("service", _str(obj, "service", required=True).strip())
        image = _str(obj, "image", required=True).strip()
        if any(c.isspace() for c in image):
            raise InvalidRequestError(f"image {image!r} may not contain whitespace")
        namespace = check_dns_label("namespace", namespace_of(obj))
        env_vars = _str_map(obj, "envVars") or {}
        for name, value in env_vars.items():
            if not _ENV_NAME.match(name):
                raise InvalidRequestError(f"envVars: {name!r} is not a valid environment variable name")
            if "\x00" in value:
                raise InvalidRequestError(f"envVars.{name} may not contain a NUL character")
        env_process = _str(obj, "envProcess")
        if "\x00" in env_process:
            raise InvalidRequestError("envProcess may not contain a NUL character")
        labels = _str_map(obj, "labels")
        for key in labels or {}:
            if not key or (key.startswith(RESERVED_LABEL_PREFIX) and key not in USER_LABELS):
                raise InvalidRequestError(f"labels: {key!r} is reserved for pyfaasd (prefix {RESERVED_LABEL_PREFIX})")
            check_label_key(key)
        secrets = tuple(check_secret_name(s) for s in _str_list(obj, "secrets"))
        return cls(
            service=service,
            image=image,
            namespace=namespace,
            env_process=env_process,
            env_vars=env_vars,
            constraints=tuple(_str_list(obj, "constraints")),
            secrets=tuple(dict.fromkeys(secrets)),
            labels=labels,
            annotations=_str_map(obj, "annotations"),
            limits=Resources.parse(obj, "limits"),
            requests=Resources.parse(obj, "requests"),
            read_only_root_filesystem=_bool(obj, "readOnlyRootFilesystem"),
        )

    @classmethod
    def from_label(cls, text: str) -> FunctionDeployment:
        """The spec back from a container label (it was validated when it was deployed)."""
        return cls.parse(json.loads(text))

    def to_json(self) -> dict[str, Any]:
        """FunctionDeployment JSON with Go omitempty semantics."""
        out: dict[str, Any] = {"service": self.service, "image": self.image, "namespace": self.namespace}
        _put(out, "envProcess", self.env_process)
        _put(out, "envVars", dict(self.env_vars))
        _put(out, "constraints", list(self.constraints))
        _put(out, "secrets", list(self.secrets))
        if self.labels is not None:
            out["labels"] = dict(self.labels)
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        if self.limits is not None:
            out["limits"] = self.limits.to_json()
        if self.requests is not None:
            out["requests"] = self.requests.to_json()
        _put(out, "readOnlyRootFilesystem", self.read_only_root_filesystem)
        return out

    def to_label(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    def scale_labels(self, maximum: int) -> scaling.ScaleLabels:
        """The ``com.openfaas.scale.*`` labels, checked (400 naming the label that is wrong)."""
        try:
            return scaling.parse_labels(self.labels, maximum)
        except scaling.ScaleLabelError as e:
            raise InvalidRequestError(str(e)) from None

    def scale_min(self, maximum: int) -> int:
        """Replicas a deploy starts: the ``com.openfaas.scale.min`` label (default 1), at least 1."""
        return self.scale_labels(maximum).minimum


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value:
        out[key] = value


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, the way Go's time.Time marshals (nanoseconds trimmed of zeros)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True, slots=True)
class FunctionUsage:
    """faas-provider's FunctionUsage: what all of a function's running replicas use now."""

    cpu: float  # milli-CPUs (1000 = one core busy)
    total_memory_bytes: float

    def to_json(self) -> dict[str, float]:
        return {"cpu": round(self.cpu, 3), "totalMemoryBytes": self.total_memory_bytes}


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    spec: FunctionDeployment
    replicas: int
    available_replicas: int
    created_at: datetime
    invocation_count: float = 0.0
    usage: FunctionUsage | None = None  # only when asked for (``?usage=1``): it takes a stats read

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {"name": spec.service, "image": spec.image, "namespace": spec.namespace}
        _put(out, "envProcess", spec.env_process)
        _put(out, "envVars", dict(spec.env_vars))
        _put(out, "constraints", list(spec.constraints))
        _put(out, "secrets", list(spec.secrets))
        # faasd always sends labels and annotations as objects; so do we. ``faas_function`` is added as
        # faas-netes and the OpenFaaS certifier expect of every provider but faasd (the function's own wins).
        out["labels"] = {FUNCTION_LABEL: spec.service, **(spec.labels or {})}
        out["annotations"] = dict(spec.annotations or {})
        if spec.limits is not None:
            out["limits"] = spec.limits.to_json()
        if spec.requests is not None:
            out["requests"] = spec.requests.to_json()
        _put(out, "readOnlyRootFilesystem", spec.read_only_root_filesystem)
        _put(out, "invocationCount", self.invocation_count)
        _put(out, "replicas", self.replicas)
        _put(out, "availableReplicas", self.available_replicas)
        out["createdAt"] = format_time(self.created_at)
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        return out


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    service: str
    namespace: str
    replicas: int

    @classmethod
    def parse(cls, obj: Mapping[str, Any], path_name: str, query_namespace: str | None, maximum: int) -> ScaleRequest:
        body_name = _str(obj, "serviceName").strip()
        if body_name and body_name != path_name:
            raise InvalidRequestError(f"serviceName {body_name!r} does not match the function in the path")
        replicas = obj.get("replicas", 0)
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise InvalidRequestError("replicas must be a whole number")
        if replicas < 0 or replicas > maximum:
            raise InvalidRequestError(f"replicas must be between 0 and {maximum}, got {replicas}")
        namespace = _str(obj, "namespace").strip() or (query_namespace or "").strip() or DEFAULT_NAMESPACE
        return cls(
            service=check_dns_label("function name", path_name),
            namespace=check_dns_label("namespace", namespace),
            replicas=replicas,
        )


@dataclass(frozen=True, slots=True)
class SecretRequest:
    name: str
    namespace: str
    value: bytes

    @classmethod
    def parse(cls, obj: Mapping[str, Any], *, need_value: bool) -> SecretRequest:
        name = check_secret_name(_str(obj, "name", required=True))
        namespace = check_dns_label("namespace", namespace_of(obj))
        raw = _str(obj, "rawValue")
        if raw:
            try:
                value = base64.b64decode(raw, validate=True)
            except binascii.Error:
                raise InvalidRequestError("rawValue must be base64") from None
        else:
            value = _str(obj, "value").encode()
        if need_value and not value:
            raise InvalidRequestError("value or rawValue is required")
        return cls(name=name, namespace=namespace, value=value)
