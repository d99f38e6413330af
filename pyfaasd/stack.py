"""``pyfaasd deploy -f stack.yml``: read a faas-cli stack file and deploy its functions through the gateway.

The file is the faas-cli ``stack.yml`` (go-sdk ``stack/schema.go``): ``version: 1.0``, ``provider.name:
openfaas``, ``provider.gateway``, and ``functions``, each turned into a faas-provider FunctionDeployment.
Build-only fields (``build_args``, ...) are accepted and ignored, as ``faas-cli deploy`` ignores them; other
unknown fields are reported as warnings. A function with ``handler:`` and a runtime ``lang:`` (``python3``,
``python3-http``, ``python3.11``) is a code function: its handler folder is uploaded and deployed onto the
runtime with no build (``pyfaasd/code_deploy.py``), so a stack written for the python3-http template deploys
unchanged.

Like faas-cli:

- ``${VAR}``, ``${VAR:-default}`` (unset or empty) and ``${VAR-default}`` (unset) are replaced from the
  environment before the YAML is parsed (faas-cli's ``--envsubst``, on by default); an unset variable without a
  default becomes empty. ``$VAR`` without braces is left alone.
- Scalars are read as the text written, so ``max_inflight: 5`` or ``RAW_BODY: true`` reach the function as
  ``"5"`` and ``"true"``, as Go's YAML decoder does for string fields.
- ``environment_file`` files (each with an ``environment:`` map) are merged in order over ``environment``;
  their paths are relative to the stack file.
- ``fprocess`` unset: the ``fprocess`` of ``template/<lang>/template.yml`` beside the stack file, when that
  file exists (and ``lang`` is not ``dockerfile``).
- The gateway URL: ``--gateway``, else ``provider.gateway`` unless it is the default, else ``OPENFAAS_URL``,
  else ``http://127.0.0.1:8080``.
- Each function: ``PUT /system/functions``, and on 404 ``POST``; 200 and 202 are success. Every function is
  tried; the exit status is 1 when any failed.

HTTP is stdlib ``urllib`` (this package may not import aiohttp); YAML is PyYAML.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pyfaasd.code_deploy import ANNOTATION_CODE, RUNTIME_LANGS, CodeDeployError, CodeRef, prepare
from pyfaasd.gateway_client import send
from servicekit.auth import DEFAULT_USER, Credentials, CredentialsError, load_credentials, secrets_dir

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
ENV_GATEWAY = "OPENFAAS_URL"
TIMEOUT_S = 60.0  # faas-cli's default command timeout

# Fields of a function that only `faas-cli build/push/up` read.
_BUILD_FIELDS = frozenset(
    {"lang", "handler", "skip_build", "build_args", "build_options", "build_secrets", "platforms", "build_target"}
)
_DEPLOY_FIELDS = frozenset(
    {
        "image",
        "fprocess",
        "namespace",
        "environment",
        "environment_file",
        "secrets",
        "labels",
        "annotations",
        "constraints",
        "limits",
        "requests",
        "readonly_root_filesystem",
    }
)
_RESOURCE_FIELDS = ("memory", "cpu")
_TRUE = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"})
_FALSE = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N", ""})
_SUBST = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


class StackError(Exception):
    """The stack file cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class StackFunction:
    name: str
    image: str
    namespace: str = ""
    fprocess: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    limits: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)
    readonly_root_filesystem: bool = False
    code: Path | None = None  # a code function: its handler (file, folder or archive), deployed with no build
    runtime: str = ""  # the runtime a code function runs on

    def deployment(self, code: CodeRef | None = None) -> dict[str, object]:
        """The FunctionDeployment JSON object, empty fields left out as Go's ``omitempty`` does.

        A code function is deployed on the runtime's image with its bundle's digest in an annotation.
        """
        annotations = dict(self.annotations)
        if code is not None:
            annotations[ANNOTATION_CODE] = code.digest
        body: dict[str, object] = {"service": self.name, "image": code.image if code else self.image}
        optional: dict[str, object] = {
            "namespace": self.namespace,
            "envProcess": "" if code else self.fprocess,
            "envVars": dict(self.environment),
            "constraints": list(self.constraints),
            "secrets": list(self.secrets),
            "labels": dict(self.labels),
            "annotations": annotations,
            "limits": {k: v for k, v in self.limits.items() if v},
            "requests": {k: v for k, v in self.requests.items() if v},
            "readOnlyRootFilesystem": self.readonly_root_filesystem,
        }
        body.update({key: value for key, value in optional.items() if value})
        return body

    def url(self, gateway: str) -> str:
        """Where the function answers, as faas-cli prints it."""
        suffix = f".{self.namespace}" if self.namespace else ""
        return f"{gateway}/function/{self.name}{suffix}"


@dataclass(frozen=True, slots=True)
class Stack:
    path: Path
    gateway: str  # provider.gateway, "" when absent
    functions: tuple[StackFunction, ...]
    warnings: tuple[str, ...] = ()


# -- reading -------------------------------------------------------------------------------------------------


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}`` from ``env``."""

    def replace(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        if operator == ":-" and not value:
            return default
        if operator == "-" and value is None:
            return default
        return value or ""

    return _SUBST.sub(replace, text)


def load_stack(path: Path, env: Mapping[str, str] | None = None) -> Stack:
    """Read and check a stack file; StackError names the field that is wrong."""
    environ = os.environ if env is None else env
    try:
        text = path.read_text()
    except OSError as e:
        raise StackError(f"{path}: cannot read: {e.strerror}") from e
    document = _parse_yaml(substitute(text, environ), path)
    where = _Where(path)
    root = where.mapping(document, "")
    version = where.string(root.get("version"), "version")
    if version not in ("", "1.0"):
        raise where.error("version", f"{version!r} is not supported (only 1.0)")
    provider = where.mapping(root.get("provider"), "provider")
    name = where.string(provider.get("name"), "provider.name")
    if name != "openfaas":
        raise where.error("provider.name", f"must be openfaas, got {name!r}")
    gateway = where.string(provider.get("gateway"), "provider.gateway")
    functions = where.mapping(root.get("functions"), "functions")
    if not functions:
        raise where.error("functions", "no functions are defined")
    warnings: list[str] = []
    parsed = tuple(_parse_function(str(fn_name), spec, where, warnings) for fn_name, spec in functions.items())
    return Stack(path=path, gateway=gateway, functions=parsed, warnings=tuple(warnings))


class _TextLoader(yaml.SafeLoader):
    """SafeLoader that reads every plain scalar as the text written (``5``, ``true`` and ``1.0`` stay strings),
    as Go's YAML decoder does for string fields. Nulls (an empty value, ``~``) and merge keys
    (``<<: *defaults``) keep their YAML meaning."""


_KEPT_RESOLVERS = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:null"})
_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in _KEPT_RESOLVERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_yaml(text: str, path: Path) -> object:
    try:
        return yaml.load(text, Loader=_TextLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        raise StackError(f"{path}: not valid YAML: {e}") from e


def _parse_function(name: str, spec: object, where: _Where, warnings: list[str]) -> StackFunction:
    prefix = f"functions.{name}"
    fields = where.mapping(spec, prefix)
    for key in fields:
        if key not in _DEPLOY_FIELDS and key not in _BUILD_FIELDS:
            warnings.append(f"{where.path}: {prefix}.{key} is not a field pyfaasd knows; ignored")
    image = where.string(fields.get("image"), f"{prefix}.image")
    lang = where.string(fields.get("lang"), f"{prefix}.lang")
    handler = where.string(fields.get("handler"), f"{prefix}.handler")
    code = where.path.parent / handler if handler and lang in RUNTIME_LANGS else None
    if not image and code is None:
        raise where.error(f"{prefix}.image", "is required (or handler with a runtime lang: python3, python3-http)")
    environment = where.string_map(fields.get("environment"), f"{prefix}.environment")
    for index, env_file in enumerate(where.string_list(fields.get("environment_file"), f"{prefix}.environment_file")):
        environment.update(_read_env_file(where.path.parent / env_file, f"{prefix}.environment_file[{index}]", where))
    fprocess = where.string(fields.get("fprocess"), f"{prefix}.fprocess")
    if not fprocess and code is None:
        fprocess = _template_fprocess(where.path.parent, lang)
    return StackFunction(
        name=name,
        image=image,
        namespace=where.string(fields.get("namespace"), f"{prefix}.namespace"),
        fprocess=fprocess,
        environment=environment,
        secrets=tuple(where.string_list(fields.get("secrets"), f"{prefix}.secrets")),
        labels=where.string_map(fields.get("labels"), f"{prefix}.labels"),
        annotations=where.string_map(fields.get("annotations"), f"{prefix}.annotations"),
        constraints=tuple(where.string_list(fields.get("constraints"), f"{prefix}.constraints")),
        limits=where.resources(fields.get("limits"), f"{prefix}.limits"),
        requests=where.resources(fields.get("requests"), f"{prefix}.requests"),
        readonly_root_filesystem=where.boolean(
            fields.get("readonly_root_filesystem"), f"{prefix}.readonly_root_filesystem"
        ),
        code=code,
        runtime=RUNTIME_LANGS.get(lang, ""),
    )


def _read_env_file(path: Path, field_name: str, where: _Where) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as e:
        raise where.error(field_name, f"cannot read {path}: {e.strerror}") from e
    inner = _Where(path)
    document = inner.mapping(_parse_yaml(text, path), "")
    return inner.string_map(document.get("environment"), "environment")


def _template_fprocess(stack_dir: Path, lang: str) -> str:
    if not lang or lang == "dockerfile":
        return ""
    template = stack_dir / "template" / lang / "template.yml"
    try:
        document = _parse_yaml(template.read_text(), template)
    except (OSError, StackError):
        return ""
    value = document.get("fprocess", "") if isinstance(document, dict) else ""
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class _Where:
    """Type checks that name the file and the field."""

    path: Path

    def error(self, field_name: str, message: str) -> StackError:
        return StackError(f"{self.path}: {field_name}: {message}" if field_name else f"{self.path}: {message}")

    def mapping(self, value: object, field_name: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(field_name, f"must be a mapping, got {_kind(value)}")
        return value

    def string(self, value: object, field_name: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(field_name, f"must be a string, got {_kind(value)}")
        return value

    def boolean(self, value: object, field_name: str) -> bool:
        text = self.string(value, field_name)  # None (absent or null) is "", false
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self.error(field_name, f"must be true or false, got {text!r}")

    def string_map(self, value: object, field_name: str) -> dict[str, str]:
        return {str(k): self.string(v, f"{field_name}.{k}") for k, v in self.mapping(value, field_name).items()}

    def string_list(self, value: object, field_name: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(field_name, f"must be a list, got {_kind(value)}")
        return [self.string(item, f"{field_name}[{i}]") for i, item in enumerate(value)]

    def resources(self, value: object, field_name: str) -> dict[str, str]:
        resources = self.string_map(value, field_name)
        unknown = sorted(set(resources) - set(_RESOURCE_FIELDS))
        if unknown:
            raise self.error(f"{field_name}.{unknown[0]}", f"unknown resource (use {' or '.join(_RESOURCE_FIELDS)})")
        return resources


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# -- deploying -------------------------------------------------------------------------------------------------


def gateway_url(flag: str | None, stack_gateway: str, env: Mapping[str, str]) -> str:
    """faas-cli's precedence: flag, stack's provider.gateway (unless the default), OPENFAAS_URL, default."""
    if flag:
        chosen = flag
    elif stack_gateway and _normalise(stack_gateway) != DEFAULT_GATEWAY:
        chosen = stack_gateway
    else:
        chosen = env.get(ENV_GATEWAY) or DEFAULT_GATEWAY
    return _normalise(chosen)


def _normalise(url: str) -> str:
    url = url.strip().lower().rstrip("/")
    return url if "://" in url else f"http://{url}"


def select(functions: Sequence[StackFunction], filters: Sequence[str] | None) -> list[StackFunction]:
    """The functions whose name matches one of the ``filters`` (shell wildcards); all when none are given."""
    if not filters:
        return list(functions)
    return [fn for fn in functions if any(fnmatch.fnmatchcase(fn.name, pattern) for pattern in filters)]


def deploy_function(
    fn: StackFunction,
    gateway: str,
    credentials: Credentials | None,
    *,
    out: Callable[[str], None],
    err: Callable[[str], None],
    auth_hint: str = "",
) -> bool:
    """PUT, then POST when the function does not exist yet; whether it counts as deployed (200 or 202)."""
    out(f"Deploying: {fn.name}.")
    url = f"{gateway}/system/functions"
    try:
        code = None
        if fn.code is not None:
            code = prepare(gateway, credentials, fn.code, fn.runtime, out)
            out(f"Code: {fn.code} ({code.files} files, {code.size} bytes) {code.digest} on {fn.runtime}.")
        body = fn.deployment(code)
        response = send("PUT", url, credentials, body=body)
        if response.status == 404:
            response = send("POST", url, credentials, body=body)
    except CodeDeployError as e:
        err(f"{fn.name}: {e}")
        return False
    except OSError as e:
        reason = getattr(e, "reason", None) or e
        err(f"{fn.name}: cannot reach the gateway at {gateway}: {reason}")
        return False
    if response.status in (200, 201, 202):
        out(f"Deployed. {response.status} {response.reason}.")
        out(f"URL: {fn.url(gateway)}")
        if response.status == 201:
            err(f"{fn.name}: the gateway answered 201, which faas-cli does not count as success")
        return response.status != 201
    if response.status == 401:
        err(f"{fn.name}: 401 Unauthorized: the gateway refused the credentials{auth_hint}")
        return False
    err(f"{fn.name}: unexpected status {response.status} {response.reason}: {response.body.strip()}")
    return False


def resolve_credentials(
    username: str | None, password_file: Path | None, state_dir: Path
) -> tuple[Credentials | None, str]:
    """The credentials to send, and a hint for a 401 (why none or which were sent)."""
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as e:
            raise StackError(f"--password-file: cannot read {password_file}: {e.strerror}") from e
        if not password:
            raise StackError(f"--password-file: {password_file} is empty")
        return Credentials(username or DEFAULT_USER, password), f" (sent user {username or DEFAULT_USER!r})"
    try:
        found = load_credentials(secrets_dir(state_dir))
    except CredentialsError as e:
        return None, f"; no credentials were sent ({e}: run as root, or pass --username and --password-file)"
    if username:
        found = Credentials(username, found.password)
    return found, f" (sent user {found.user!r} from {secrets_dir(state_dir)})"


def deploy_command(
    *,
    stack_file: Path,
    filters: Sequence[str] | None,
    gateway: str | None,
    username: str | None,
    password_file: Path | None,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] | None = None,
) -> int:
    """``pyfaasd deploy``: 0 when every selected function deployed, 1 when one failed, 2 for a bad stack."""
    write_err = err or (lambda line: print(line, file=sys.stderr))
    environ = os.environ if env is None else env
    try:
        stack = load_stack(stack_file, environ)
        selected = select(stack.functions, filters)
        if not selected:
            raise StackError(f"{stack_file}: no function matches --filter {' '.join(filters or [])}")
        credentials, hint = resolve_credentials(username, password_file, state_dir)
    except StackError as e:
        write_err(f"pyfaasd deploy: {e}")
        return 2
    for warning in stack.warnings:
        write_err(f"warning: {warning}")
    url = gateway_url(gateway, stack.gateway, environ)
    failed = [
        fn.name for fn in selected if not deploy_function(fn, url, credentials, out=out, err=write_err, auth_hint=hint)
    ]
    if failed:
        write_err(f"pyfaasd deploy: failed: {', '.join(failed)}")
        return 1
    return 0


def parse_pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``K=V`` flags as a mapping; a value without ``=`` is a StackError naming the flag."""
    pairs: dict[str, str] = {}
    for value in values or ():
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise StackError(f"{flag} {value!r}: expected KEY=VALUE")
        pairs[key] = text
    return pairs


def deploy_path_command(
    *,
    path: Path,
    name: str,
    runtime: str,
    namespace: str,
    env: Sequence[str] | None,
    secrets: Sequence[str] | None,
    labels: Sequence[str] | None,
    annotations: Sequence[str] | None,
    gateway: str | None,
    username: str | None,
    password_file: Path | None,
    state_dir: Path,
    environ: Mapping[str, str] | None = None,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] | None = None,
) -> int:
    """``pyfaasd deploy PATH --name NAME``: a .py, a folder or an archive deployed as a code function."""
    write_err = err or (lambda line: print(line, file=sys.stderr))
    environment = os.environ if environ is None else environ
    try:
        fn = StackFunction(
            name=name,
            image="",
            namespace=namespace,
            environment=parse_pairs(env, "--env"),
            secrets=tuple(secrets or ()),
            labels=parse_pairs(labels, "--label"),
            annotations=parse_pairs(annotations, "--annotation"),
            code=path,
            runtime=runtime,
        )
        credentials, hint = resolve_credentials(username, password_file, state_dir)
    except StackError as e:
        write_err(f"pyfaasd deploy: {e}")
        return 2
    url = gateway_url(gateway, "", environment)
    return 0 if deploy_function(fn, url, credentials, out=out, err=write_err, auth_hint=hint) else 1
