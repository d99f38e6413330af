import asyncio
import json
import re
import textwrap
from pathlib import Path

import pytest
from aiohttp import web

from pyfaasd import cli, stack
from pyfaasd.stack import StackError, StackFunction
from servicekit.auth import Credentials, ensure_credentials


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


FULL = """
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  hello:
    lang: python3-http
    handler: ./hello
    image: ${REGISTRY:-pyfaasd}/hello:${TAG}
    fprocess: python3 index.py
    namespace: team-a
    environment:
      write_timeout: 10s
      max_inflight: 5
      RAW_BODY: true
      EMPTY:
    environment_file:
      - env/common.yml
      - env/override.yml
    secrets: [api-key, db-password]
    labels:
      com.openfaas.scale.min: "1"
    annotations:
      topic: cron-function
    constraints: ["node.platform.os == linux"]
    limits: {memory: 128Mi, cpu: 100m}
    requests: {memory: 64Mi}
    readonly_root_filesystem: true
    build_args: {A: b}
"""


@pytest.fixture
def full_stack(tmp_path) -> Path:
    write(tmp_path / "env" / "common.yml", "environment:\n  A: common\n  B: common\n  write_timeout: 20s\n")
    write(tmp_path / "env" / "override.yml", "environment:\n  B: override\n")
    return write(tmp_path / "stack.yml", FULL)


# -- substitution ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("${A}", {}, ""),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A:-d}", {"A": "x"}, "x"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:-}", {}, ""),
        ("$A and ${ A }", {"A": "x"}, "$A and ${ A }"),
        ("img:${TAG:-latest}-${ARCH}", {"ARCH": "arm64"}, "img:latest-arm64"),
    ],
)
def test_substitute(text, env, expected):
    assert stack.substitute(text, env) == expected


# -- parsing -------------------------------------------------------------------------------------------------


def test_load_stack_full_function_becomes_a_function_deployment(full_stack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # environment_file paths are relative to the stack file, not the cwd
    parsed = stack.load_stack(full_stack, {"TAG": "1.2"})
    assert parsed.gateway == "http://127.0.0.1:8080"
    assert parsed.warnings == ()
    (fn,) = parsed.functions
    assert fn.deployment() == {
        "service": "hello",
        "image": "pyfaasd/hello:1.2",
        "namespace": "team-a",
        "envProcess": "python3 index.py",
        "envVars": {
            "write_timeout": "20s",  # the env files win over environment, in order
            "max_inflight": "5",  # scalars are the text written, as Go reads them into strings
            "RAW_BODY": "true",
            "EMPTY": "",
            "A": "common",
            "B": "override",
        },
        "secrets": ["api-key", "db-password"],
        "labels": {"com.openfaas.scale.min": "1"},
        "annotations": {"topic": "cron-function"},
        "constraints": ["node.platform.os == linux"],
        "limits": {"memory": "128Mi", "cpu": "100m"},
        "requests": {"memory": "64Mi"},
        "readOnlyRootFilesystem": True,
    }
    assert fn.url("http://gw:8080") == "http://gw:8080/function/hello.team-a"


def test_load_stack_minimal_function_omits_empty_fields(tmp_path):
    path = write(
        tmp_path / "stack.yml",
        """
        provider: {name: openfaas}
        functions:
          tiny:
            image: pyfaasd/fn-echo:latest
            environment: {}
            secrets: []
            labels:
            limits: {}
            readonly_root_filesystem: false
        """,
    )
    (fn,) = stack.load_stack(path, {}).functions
    assert fn.deployment() == {"service": "tiny", "image": "pyfaasd/fn-echo:latest"}
    assert fn.url("http://gw") == "http://gw/function/tiny"


def test_load_stack_supports_yaml_anchors_and_merge_keys(tmp_path):
    path = write(
        tmp_path / "stack.yml",
        """
        version: "1.0"
        provider: {name: openfaas}
        x-env: &env {LOG: debug, TZ: UTC}
        functions:
          a: {image: a, environment: {<<: *env, TZ: CET}}
        """,
    )
    (fn,) = stack.load_stack(path, {}).functions
    assert fn.environment == {"LOG": "debug", "TZ": "CET"}


def test_load_stack_reads_fprocess_from_the_template_unless_dockerfile(tmp_path):
    write(tmp_path / "template" / "python3" / "template.yml", "language: python3\nfprocess: python3 index.py\n")
    path = write(
        tmp_path / "stack.yml",
        """
        provider: {name: openfaas}
        functions:
          a: {lang: python3, image: a}
          b: {lang: dockerfile, image: b}
          c: {lang: python3, image: c, fprocess: cat}
          d: {lang: missing-template, image: d}
        """,
    )
    fprocess = {fn.name: fn.fprocess for fn in stack.load_stack(path, {}).functions}
    assert fprocess == {"a": "python3 index.py", "b": "", "c": "cat", "d": ""}


def test_load_stack_warns_about_unknown_fields_and_ignores_build_fields(tmp_path):
    path = write(
        tmp_path / "stack.yml",
        """
        provider: {name: openfaas}
        functions:
          a: {image: a, handler: ./a, skip_build: true, imagee: typo}
        """,
    )
    warnings = stack.load_stack(path, {}).warnings
    assert len(warnings) == 1
    assert "functions.a.imagee" in warnings[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("version: 2.0\nprovider: {name: openfaas}\nfunctions: {a: {image: a}}", "version"),
        ("provider: {name: faas}\nfunctions: {a: {image: a}}", "provider.name"),
        ("functions: {a: {image: a}}", "provider.name"),
        ("provider: {name: openfaas}\nfunctions: {}", "functions"),
        ("provider: {name: openfaas}\nfunctions: [a]", "functions"),
        ("provider: {name: openfaas}\nfunctions: {a: {lang: python3}}", "functions.a.image"),
        ("provider: {name: openfaas}\nfunctions: {a: {image: a, environment: [A=1]}}", "functions.a.environment"),
        ("provider: {name: openfaas}\nfunctions: {a: {image: a, environment: {A: [1]}}}", "functions.a.environment.A"),
        ("provider: {name: openfaas}\nfunctions: {a: {image: a, secrets: s}}", "functions.a.secrets"),
        ("provider: {name: openfaas}\nfunctions: {a: {image: a, limits: {gpu: 1}}}", "functions.a.limits.gpu"),
        (
            "provider: {name: openfaas}\nfunctions: {a: {image: a, readonly_root_filesystem: maybe}}",
            "functions.a.readonly_root_filesystem",
        ),
        ("provider: {name: openfaas}\nfunctions: {a: {image: a, environment_file: [nope.yml]}}", "environment_file[0]"),
        ("provider: {name: openfaas}\nfunctions: {a: {image: [a]}}", "functions.a.image"),
    ],
)
def test_load_stack_errors_name_the_file_and_field(tmp_path, body, field):
    path = write(tmp_path / "stack.yml", body)
    with pytest.raises(StackError, match=f"^{re.escape(str(path))}: .*{re.escape(field)}"):
        stack.load_stack(path, {})


def test_load_stack_invalid_yaml_and_missing_file(tmp_path):
    path = write(tmp_path / "stack.yml", "functions: {a: [\n")
    with pytest.raises(StackError, match="not valid YAML"):
        stack.load_stack(path, {})
    with pytest.raises(StackError, match="cannot read"):
        stack.load_stack(tmp_path / "absent.yml", {})


# -- choosing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "stack_gw", "env", "expected"),
    [
        (None, "", {}, "http://127.0.0.1:8080"),
        (None, "", {"OPENFAAS_URL": "http://env:8080/"}, "http://env:8080"),
        (None, "http://stack:8080", {"OPENFAAS_URL": "http://env:8080"}, "http://stack:8080"),
        (None, "http://127.0.0.1:8080", {"OPENFAAS_URL": "http://env:8080"}, "http://env:8080"),
        ("Flag:9999", "http://stack:8080", {"OPENFAAS_URL": "http://env"}, "http://flag:9999"),
    ],
    ids=["default", "env", "stack-over-env", "default-stack-gateway-yields", "flag"],
)
def test_gateway_url_precedence_like_faas_cli(flag, stack_gw, env, expected):
    assert stack.gateway_url(flag, stack_gw, env) == expected


def test_select_filters_with_wildcards():
    fns = [StackFunction("alpha", "i"), StackFunction("beta", "i"), StackFunction("alpine", "i")]
    assert [f.name for f in stack.select(fns, None)] == ["alpha", "beta", "alpine"]
    assert [f.name for f in stack.select(fns, ["al*"])] == ["alpha", "alpine"]
    assert [f.name for f in stack.select(fns, ["beta", "alpha"])] == ["alpha", "beta"]


# -- deploying against a fake gateway ------------------------------------------------------------------------


class FakeGateway:
    """/system/functions with a scripted answer per method; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, object], str | None]] = []
        self.url = ""
        self.answers: dict[str, tuple[int, str]] = {"PUT": (404, "not found"), "POST": (202, "")}

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, await request.json(), request.headers.get("Authorization")))
        status, text = self.answers[request.method]
        return web.Response(status=status, text=text)


@pytest.fixture
async def gateway(aiohttp_server):
    fake = FakeGateway()
    app = web.Application()
    app.router.add_route("PUT", "/system/functions", fake.handle)
    app.router.add_route("POST", "/system/functions", fake.handle)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def two_functions(tmp_path) -> Path:
    return write(
        tmp_path / "stack.yml",
        """
        version: 1.0
        provider: {name: openfaas, gateway: http://127.0.0.1:8080}
        functions:
          echo: {image: pyfaasd/fn-echo:latest}
          env: {image: pyfaasd/fn-env:latest, namespace: team-a}
        """,
    )


async def run_deploy(stack_file, gateway_url, state_dir, *, filters=None, username=None, password_file=None):
    lines: list[str] = []
    errors: list[str] = []
    code = await asyncio.to_thread(
        stack.deploy_command,
        stack_file=stack_file,
        filters=filters,
        gateway=gateway_url,
        username=username,
        password_file=password_file,
        state_dir=state_dir,
        env={},
        out=lines.append,
        err=errors.append,
    )
    return code, lines, errors


async def test_deploy_put_404_then_post_with_state_dir_credentials(gateway, two_functions, tmp_path):
    creds, _ = ensure_credentials(tmp_path / "state" / "secrets")
    code, lines, errors = await run_deploy(two_functions, gateway.url, tmp_path / "state")
    assert (code, errors) == (0, [])
    assert [(method, body["service"]) for method, body, _ in gateway.requests] == [
        ("PUT", "echo"),
        ("POST", "echo"),
        ("PUT", "env"),
        ("POST", "env"),
    ]
    assert {auth for _, _, auth in gateway.requests} == {creds.authorization}
    assert gateway.requests[3][1] == {"service": "env", "image": "pyfaasd/fn-env:latest", "namespace": "team-a"}
    assert lines == [
        "Deploying: echo.",
        "Deployed. 202 Accepted.",
        f"URL: {gateway.url}/function/echo",
        "Deploying: env.",
        "Deployed. 202 Accepted.",
        f"URL: {gateway.url}/function/env.team-a",
    ]


async def test_deploy_existing_function_is_updated_with_put_only(gateway, two_functions, tmp_path):
    gateway.answers["PUT"] = (200, "")
    code, lines, _ = await run_deploy(two_functions, gateway.url, tmp_path, filters=["echo"])
    assert code == 0
    assert [method for method, _, _ in gateway.requests] == ["PUT"]
    assert "Deployed. 200 OK." in lines


async def test_deploy_with_username_and_password_file(gateway, two_functions, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    code, _, _ = await run_deploy(
        two_functions, gateway.url, tmp_path, filters=["echo"], username="ops", password_file=secret
    )
    assert code == 0
    assert gateway.requests[0][2] == Credentials("ops", "s3cret").authorization


async def test_deploy_401_names_the_credentials_problem(gateway, two_functions, tmp_path):
    gateway.answers["PUT"] = (401, "invalid credentials")
    code, _, errors = await run_deploy(two_functions, gateway.url, tmp_path / "nothing", filters=["echo"])
    assert code == 1
    assert gateway.requests[0][2] is None  # no readable credentials: none sent
    assert "echo: 401 Unauthorized" in errors[0]
    assert "--password-file" in errors[0]


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [("POST", 409, "function echo already exists"), ("POST", 500, "docker is down"), ("PUT", 400, "bad image")],
)
async def test_deploy_error_status_is_printed_with_the_body(gateway, two_functions, tmp_path, method, status, body):
    gateway.answers[method] = (status, body)
    code, lines, errors = await run_deploy(two_functions, gateway.url, tmp_path)
    assert code == 1
    assert any(f"echo: unexpected status {status}" in e and body in e for e in errors)
    assert errors[-1] == "pyfaasd deploy: failed: echo, env"
    assert not any(line.startswith("Deployed.") for line in lines)


async def test_deploy_201_is_printed_but_fails_like_faas_cli(gateway, two_functions, tmp_path):
    gateway.answers["POST"] = (201, "")
    code, lines, errors = await run_deploy(two_functions, gateway.url, tmp_path, filters=["echo"])
    assert code == 1
    assert "Deployed. 201 Created." in lines
    assert "201" in errors[0]


async def test_deploy_unreachable_gateway(two_functions, tmp_path, unused_tcp_port):
    code, _, errors = await run_deploy(two_functions, f"http://127.0.0.1:{unused_tcp_port}", tmp_path)
    assert code == 1
    assert "cannot reach the gateway" in errors[0]


async def test_deploy_bad_stack_or_filter_exits_2_before_any_request(gateway, two_functions, tmp_path):
    code, _, errors = await run_deploy(two_functions, gateway.url, tmp_path, filters=["nomatch*"])
    assert code == 2
    assert "no function matches --filter nomatch*" in errors[0]
    bad = write(tmp_path / "bad.yml", "provider: {name: openfaas}\nfunctions: {a: {}}\n")
    code, _, errors = await run_deploy(bad, gateway.url, tmp_path)
    assert code == 2
    assert "functions.a.image: is required" in errors[0]
    assert gateway.requests == []


def test_cli_deploy_bad_stack_exits_2(tmp_path, capsys):
    path = write(tmp_path / "stack.yml", "provider: {name: faas}\nfunctions: {a: {image: a}}\n")
    assert cli.main(["deploy", "-f", str(path), "--state-dir", str(tmp_path)]) == 2
    assert "provider.name: must be openfaas" in capsys.readouterr().err


def test_deployment_json_is_serialisable():
    fn = StackFunction("a", "img", environment={"K": "v"}, limits={"memory": "1Gi", "cpu": ""})
    assert json.loads(json.dumps(fn.deployment())) == {
        "service": "a",
        "image": "img",
        "envVars": {"K": "v"},
        "limits": {"memory": "1Gi"},
    }
